#!/usr/bin/env bash
# Make sure the servers taskq needs are up on 127.0.0.1: `ensure-services.sh rabbitmq redis`.
#
# For each service: if something answers on its port, leave it alone. If the server is
# installed but down, start it; if it is not installed, install it with apt-get (as root, or
# through sudo), start it, and wait until its port answers. Idempotent.
#
#   RabbitMQ: started with `systemctl start rabbitmq-server` where systemd runs, else with
#             `rabbitmq-server -detached` (the Debian wrapper runs it as the rabbitmq user).
#   Redis:    started with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379
#             --save "" --appendonly no` (no persistence: it only holds test results).
#   PostgreSQL: Debian's cluster, started with `pg_ctlcluster VERSION main start`; once up,
#             local TCP connections get trust authentication and a database `test` exists
#             (the result store's tests connect as postgres@127.0.0.1/test).
#
# RABBITMQ_HOST/RABBITMQ_PORT and REDIS_HOST/REDIS_PORT say where to look (default 127.0.0.1,
# 5672 and 6379); SERVICE_WAIT is how long to wait for a start, in seconds (default 90).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RABBITMQ_HOST="${RABBITMQ_HOST:-127.0.0.1}"
RABBITMQ_PORT="${RABBITMQ_PORT:-5672}"
REDIS_HOST="${REDIS_HOST:-127.0.0.1}"
REDIS_PORT="${REDIS_PORT:-6379}"
POSTGRES_HOST="${POSTGRES_HOST:-127.0.0.1}"
POSTGRES_PORT="${POSTGRES_PORT:-5432}"
SERVICE_WAIT="${SERVICE_WAIT:-90}"

systemd_running() {
    [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

start_rabbitmq() {
    if systemd_running && as_root systemctl start rabbitmq-server; then
        return 0
    fi
    # Debian's wrapper starts the node through su, with a soft limit of 1024 open files: the
    # node's file handle cache then stops accepting connections (the handshake never
    # answers) once a few hundred queues exist. As root, start it with the hard limit.
    local inner=/usr/lib/rabbitmq/bin/rabbitmq-server
    if [ "$(id -u)" = 0 ] && [ -x "$inner" ] && id rabbitmq >/dev/null 2>&1; then
        su rabbitmq -s /bin/sh -c \
            "ulimit -n \$(ulimit -Hn) 2>/dev/null; cd /var/lib/rabbitmq && $inner -detached" \
            && return 0
    fi
    as_root "$(find_program rabbitmq-server)" -detached
}

ensure_rabbitmq() {
    step "RabbitMQ on $RABBITMQ_HOST:$RABBITMQ_PORT"
    if port_open "$RABBITMQ_HOST" "$RABBITMQ_PORT"; then
        info "RabbitMQ is up"
        return 0
    fi
    if ! find_program rabbitmq-server >/dev/null; then
        info "RabbitMQ is not installed"
        apt_install rabbitmq-server
        # Where systemd runs, installing the package starts the server.
        if wait_port "$RABBITMQ_HOST" "$RABBITMQ_PORT" 5 RabbitMQ; then
            return 0
        fi
    fi
    step "starting RabbitMQ"
    start_rabbitmq
    if ! wait_port "$RABBITMQ_HOST" "$RABBITMQ_PORT" "$SERVICE_WAIT" RabbitMQ; then
        info "last lines of the RabbitMQ logs:"
        tail -n 30 /var/log/rabbitmq/*.log 2>/dev/null >&2 || true
        die "RabbitMQ did not start listening on $RABBITMQ_HOST:$RABBITMQ_PORT within ${SERVICE_WAIT} s"
    fi
}

ensure_redis() {
    step "Redis on $REDIS_HOST:$REDIS_PORT"
    if port_open "$REDIS_HOST" "$REDIS_PORT"; then
        info "Redis is up"
        return 0
    fi
    if ! find_program redis-server >/dev/null; then
        info "Redis is not installed"
        apt_install redis-server
        if wait_port "$REDIS_HOST" "$REDIS_PORT" 5 Redis; then
            return 0
        fi
    fi
    step "starting Redis"
    run "$(find_program redis-server)" --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" \
        --save "" --appendonly no
    wait_port "$REDIS_HOST" "$REDIS_PORT" "$SERVICE_WAIT" Redis \
        || die "Redis did not start listening on $REDIS_HOST:$REDIS_PORT within ${SERVICE_WAIT} s"
}

postgres_cluster() {
    # The newest Debian cluster: "VERSION main".
    pg_lsclusters --no-header 2>/dev/null | awk '{print $1, $2}' | sort -V | tail -n 1
}

trust_local_tcp() {
    local version="$1" hba
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! grep -qE '^host +all +all +127\.0\.0\.1/32 +trust' "$hba"; then
        as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
        as_root pg_ctlcluster "$version" main reload
    fi
}

ensure_postgres() {
    step "PostgreSQL on $POSTGRES_HOST:$POSTGRES_PORT"
    if port_open "$POSTGRES_HOST" "$POSTGRES_PORT"; then
        info "PostgreSQL is up"
        return 0
    fi
    if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(postgres_cluster)" ]; then
        info "PostgreSQL is not installed"
        apt_install postgresql
    fi
    local cluster
    cluster="$(postgres_cluster)"
    [ -n "$cluster" ] || die "no PostgreSQL cluster found after installing postgresql"
    step "starting PostgreSQL $cluster"
    # shellcheck disable=SC2086
    as_root pg_ctlcluster $cluster start || true
    wait_port "$POSTGRES_HOST" "$POSTGRES_PORT" "$SERVICE_WAIT" PostgreSQL \
        || die "PostgreSQL did not start listening on $POSTGRES_HOST:$POSTGRES_PORT within ${SERVICE_WAIT} s"
    trust_local_tcp "${cluster%% *}"
    as_root su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname = 'test'\"" \
        | grep -q 1 || as_root su postgres -c "createdb test"
}

[ "$#" -gt 0 ] || die "usage: $0 rabbitmq|redis|postgres ..."
for service in "$@"; do
    case "$service" in
        rabbitmq) ensure_rabbitmq ;;
        redis) ensure_redis ;;
        postgres) ensure_postgres ;;
        *) die "unknown service $service (use rabbitmq, redis or postgres)" ;;
    esac
done
