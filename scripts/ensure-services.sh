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
#
# RABBITMQ_HOST/RABBITMQ_PORT and REDIS_HOST/REDIS_PORT say where to look (default 127.0.0.1,
# 5672 and 6379); SERVICE_WAIT is how long to wait for a start, in seconds (default 90).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RABBITMQ_HOST="${RABBITMQ_HOST:-127.0.0.1}"
RABBITMQ_PORT="${RABBITMQ_PORT:-5672}"
REDIS_HOST="${REDIS_HOST:-127.0.0.1}"
REDIS_PORT="${REDIS_PORT:-6379}"
SERVICE_WAIT="${SERVICE_WAIT:-90}"

systemd_running() {
    [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

start_rabbitmq() {
    if systemd_running && as_root systemctl start rabbitmq-server; then
        return 0
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

[ "$#" -gt 0 ] || die "usage: $0 rabbitmq|redis ..."
for service in "$@"; do
    case "$service" in
        rabbitmq) ensure_rabbitmq ;;
        redis) ensure_redis ;;
        *) die "unknown service $service (use rabbitmq or redis)" ;;
    esac
done
