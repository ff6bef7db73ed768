#!/usr/bin/env bash
# A 3-node RabbitMQ cluster on this machine, for tests and demos, from the installed
# rabbitmq-server. It never touches the shared node on 5672: its own node names, ports,
# config files, data directories and Erlang cookie (a per-cluster HOME).
#
#   bash scripts/cluster.sh up        start the 3 nodes (idempotent), join 2 and 3 to 1, wait
#                                     until all 3 run as members, print the URLs and the time
#   bash scripts/cluster.sh kill N    SIGKILL node N's Erlang VM (pid from its pid file)
#   bash scripts/cluster.sh start N   start node N again and wait until it runs in the cluster
#   bash scripts/cluster.sh status    each node's state, then the cluster's members
#   bash scripts/cluster.sh urls      the AMQP URLs on one line, comma-separated (TASKQ_BROKER)
#   bash scripts/cluster.sh urls tls  the amqps URL of node 1, with its CA and client cert
#   bash scripts/cluster.sh ctl N ... rabbitmqctl against node N (with the cluster's cookie)
#   bash scripts/cluster.sh down      stop every node (killing those that do not stop) and
#                                     remove the cluster's directory; fine on a half-dead cluster
#
# Settings (environment), so that several clusters can run side by side:
#   TASKQ_CLUSTER_NAME       node name prefix (default taskq: taskq1@localhost .. taskq3@localhost)
#   TASKQ_CLUSTER_PORT_BASE  (default 5700) AMQP base+1..3, TLS base+11 (node 1), management
#                            base+10001..3, Erlang distribution base+20001..3, rabbitmqctl's
#                            own distribution ports base+30001..base+30099
#   TASKQ_CLUSTER_DIR        data, logs, config, TLS files (default /tmp/<name>-cluster)
#   TASKQ_CLUSTER_WAIT       seconds to wait for a node or the cluster (default 120)
#
# TLS (node 1, port base+11, verify_peer, a client certificate optional): `up` writes a test CA,
# a server certificate for localhost (DNS:localhost, IP:127.0.0.1), a client certificate signed
# by the CA and an unrelated "wrong" CA into $TASKQ_CLUSTER_DIR/tls/: ca.pem, server.pem,
# server.key, client.pem, client.key, wrong-ca.pem.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME="${TASKQ_CLUSTER_NAME:-taskq}"
BASE="${TASKQ_CLUSTER_PORT_BASE:-5700}"
DIR="${TASKQ_CLUSTER_DIR:-/tmp/${NAME}-cluster}"
WAIT="${TASKQ_CLUSTER_WAIT:-120}"
NODES=(1 2 3)
HOST=localhost
MARKER=".taskq-cluster"

[[ "$NAME" =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]] || die "TASKQ_CLUSTER_NAME must be a plain word: $NAME"
[[ "$BASE" =~ ^[0-9]+$ ]] && [ "$BASE" -ge 1024 ] && [ "$BASE" -le 35000 ] \
    || die "TASKQ_CLUSTER_PORT_BASE must be a number from 1024 to 35000: $BASE"
# 5672 (the shared node), 15672 and 25672 fall inside base+1..base+30099 for bases near them.
for shared in 5672 15672 25672 35672; do
    for offset in 1 2 3 11 10001 10002 10003 20001 20002 20003; do
        [ $((BASE + offset)) -ne "$shared" ] \
            || die "TASKQ_CLUSTER_PORT_BASE $BASE would use port $shared of the shared node"
    done
done
case "$DIR" in
    /*) ;;
    *) die "TASKQ_CLUSTER_DIR must be an absolute path: $DIR" ;;
esac
[ "$DIR" != "/" ] || die "TASKQ_CLUSTER_DIR must not be /"

node_name() { echo "${NAME}$1@${HOST}"; }
amqp_port() { echo $((BASE + $1)); }
tls_port() { echo $((BASE + 11)); }
mgmt_port() { echo $((BASE + 10000 + $1)); }
dist_port() { echo $((BASE + 20000 + $1)); }
node_dir() { echo "$DIR/node$1"; }
pid_file() { echo "$(node_dir "$1")/rabbit.pid"; }

# The unwrapped scripts: Debian's wrappers in /usr/sbin switch to the rabbitmq user and its
# HOME (the shared node's cookie), which is exactly what this cluster must not use.
rabbit_tool() {
    local name="$1"
    if [ -x "/usr/lib/rabbitmq/bin/$name" ]; then
        echo "/usr/lib/rabbitmq/bin/$name"
    else
        find_program "$name" || die "$name not found: is rabbitmq-server installed?"
    fi
}

# The environment every server and CLI call for node $1 runs with.
node_env() {
    local n="$1" d
    d="$(node_dir "$n")"
    echo HOME="$DIR/home" \
        RABBITMQ_NODENAME="$(node_name "$n")" \
        RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf" \
        RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
        RABBITMQ_CONFIG_FILES="$d/conf.d" \
        RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$d/mnesia" \
        RABBITMQ_LOG_BASE="$d/log" \
        RABBITMQ_PID_FILE="$(pid_file "$n")" \
        RABBITMQ_NODE_PORT="$(amqp_port "$n")" \
        RABBITMQ_DIST_PORT="$(dist_port "$n")" \
        RABBITMQ_CTL_DIST_PORT_MIN=$((BASE + 30001)) \
        RABBITMQ_CTL_DIST_PORT_MAX=$((BASE + 30099)) \
        ERL_EPMD_ADDRESS=127.0.0.1
}

# rabbitmqctl (or another CLI tool, $TOOL) against node $1.
ctl() {
    local n="$1"
    shift
    # shellcheck disable=SC2046 # node_env prints NAME=value words without spaces
    env $(node_env "$n") "$(rabbit_tool "${TOOL:-rabbitmqctl}")" -n "$(node_name "$n")" "$@"
}

pid_of() {
    local file
    file="$(pid_file "$1")"
    [ -s "$file" ] && tr -dc '0-9' <"$file"
}

# Whether node $1's Erlang VM is alive (its pid file names a live process).
vm_alive() {
    local pid
    pid="$(pid_of "$1")" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# The running members as seen from node $1, one per line (empty when it cannot answer).
running_members() {
    ctl "$1" cluster_status --formatter json 2>/dev/null \
        | jq -r '.running_nodes[]?' 2>/dev/null || true
}

live_node() {
    local n
    for n in "${NODES[@]}"; do
        if vm_alive "$n" && ctl "$n" -q ping >/dev/null 2>&1; then
            echo "$n"
            return 0
        fi
    done
    return 1
}

# Wait until node $1's VM is up with the rabbit app running.
wait_node() {
    local n="$1"
    if ! ctl "$n" -q wait "$(pid_file "$n")" --timeout "$WAIT" >/dev/null 2>&1; then
        info "node $(node_name "$n") did not start within ${WAIT} s; its log:"
        tail -n 40 "$(node_dir "$n")/log/"*.log >&2 2>/dev/null || true
        die "node $(node_name "$n") did not start"
    fi
}

# Wait until every node in $@ runs as a member of the cluster (seen from each of them).
wait_members() {
    local deadline=$((SECONDS + WAIT)) n m missing
    while :; do
        missing=""
        for n in "$@"; do
            members="$(running_members "$n")"
            for m in "${NODES[@]}"; do
                grep -qx "$(node_name "$m")" <<<"$members" || missing+=" $(node_name "$m")@$n"
            done
        done
        [ -z "$missing" ] && return 0
        [ "$SECONDS" -lt "$deadline" ] \
            || die "the cluster did not form within ${WAIT} s (missing member@seen-from:$missing)"
        sleep 0.5
    done
}

write_config() {
    local n="$1" d
    d="$(node_dir "$n")"
    mkdir -p "$d/mnesia" "$d/log" "$d/conf.d"
    # The env file replaces /etc/rabbitmq/rabbitmq-env.conf (the shared node's NODENAME).
    printf '# %s node %s: everything is set through RABBITMQ_* variables\n' "$NAME" "$n" \
        >"$d/rabbitmq-env.conf"
    echo '[rabbitmq_management].' >"$d/enabled_plugins"
    {
        echo "cluster_name = $NAME"
        echo "listeners.tcp.1 = 127.0.0.1:$(amqp_port "$n")"
        echo "management.tcp.ip = 127.0.0.1"
        echo "management.tcp.port = $(mgmt_port "$n")"
        echo "loopback_users.guest = true"
        echo "log.console = false"
        echo "log.file.level = info"
        if [ "$n" = 1 ]; then
            echo "listeners.ssl.1 = 127.0.0.1:$(tls_port)"
            echo "ssl_options.cacertfile = $DIR/tls/ca.pem"
            echo "ssl_options.certfile = $DIR/tls/server.pem"
            echo "ssl_options.keyfile = $DIR/tls/server.key"
            echo "ssl_options.verify = verify_peer"
            echo "ssl_options.fail_if_no_peer_cert = false"
        fi
    } >"$d/rabbitmq.conf"
    # Only loopback for the distribution too (the shared node does the same in its env file).
    echo '[{kernel, [{inet_dist_use_interface, {127,0,0,1}}]}].' >"$d/advanced.config"
}

# A CA ($1: file stem, $2: common name) in $DIR/tls.
make_ca() {
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -sha256 -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -keyout "$DIR/tls/$1.key" -out "$DIR/tls/$1.pem" 2>/dev/null
}

# A certificate signed by the test CA: $1 file stem, $2 common name, $3 extensions.
make_cert() {
    printf '%s\n' "$3" "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid,issuer" \
        "basicConstraints=CA:FALSE" >"$DIR/tls/$1.ext"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" \
        -keyout "$DIR/tls/$1.key" -out "$DIR/tls/$1.csr" 2>/dev/null
    openssl x509 -req -days 30 -sha256 -in "$DIR/tls/$1.csr" \
        -CA "$DIR/tls/ca.pem" -CAkey "$DIR/tls/ca.key" -CAcreateserial \
        -extfile "$DIR/tls/$1.ext" -out "$DIR/tls/$1.pem" 2>/dev/null
    rm -f "$DIR/tls/$1.csr" "$DIR/tls/$1.ext"
}

write_tls() {
    [ -s "$DIR/tls/client.pem" ] && return 0
    command -v openssl >/dev/null 2>&1 || die "openssl is needed for the TLS test certificates"
    mkdir -p "$DIR/tls"
    chmod 700 "$DIR/tls"
    make_ca ca "$NAME test CA"
    make_ca wrong-ca "$NAME unrelated CA"
    make_cert server localhost \
        "subjectAltName=DNS:localhost,IP:127.0.0.1
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth"
    make_cert client "$NAME-client" \
        "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    rm -f "$DIR/tls/wrong-ca.key" "$DIR/tls/ca.srl"
    chmod 600 "$DIR/tls/"*.key
}

write_cookie() {
    [ -s "$DIR/home/.erlang.cookie" ] && return 0
    mkdir -p "$DIR/home"
    chmod 700 "$DIR/home"
    (umask 077 && openssl rand -hex 20 | tr -d '\n' >"$DIR/home/.erlang.cookie")
    chmod 400 "$DIR/home/.erlang.cookie"
}

# Start node $1's VM in the background (detached from this shell's process group).
launch() {
    local n="$1" port
    for port in "$(amqp_port "$n")" "$(mgmt_port "$n")" "$(dist_port "$n")"; do
        ! port_open 127.0.0.1 "$port" \
            || die "port $port (node $(node_name "$n")) is taken by another process"
    done
    write_config "$n"
    rm -f "$(pid_file "$n")"
    info "starting $(node_name "$n") (AMQP $(amqp_port "$n"), management $(mgmt_port "$n"))"
    # shellcheck disable=SC2046 # node_env prints NAME=value words without spaces
    (cd "$DIR" && env $(node_env "$n") setsid "$(rabbit_tool rabbitmq-server)" -detached \
        >>"$(node_dir "$n")/log/startup.log" 2>&1 </dev/null 9>&-)
}

# Whether node $1 has never been started (no data directory yet).
fresh() { [ ! -d "$(node_dir "$1")/mnesia/$(node_name "$1")" ]; }

# Join node $1 (running, fresh) to node 1: stop_app, join_cluster, start_app.
join() {
    local n="$1" log
    log="$(node_dir "$n")/log/join.log"
    info "joining $(node_name "$n") to $(node_name 1)"
    if ! { ctl "$n" -q stop_app && ctl "$n" -q join_cluster "$(node_name 1)"         && ctl "$n" -q start_app; } >>"$log" 2>&1; then
        cat "$log" >&2
        die "$(node_name "$n") could not join $(node_name 1)"
    fi
}

# Nodes $@ up and members: start those whose VM is down (all at once, the slow part), then
# join the fresh ones to node 1, one at a time.
ensure_nodes() {
    local n to_join=()
    for n in "$@"; do
        if ! vm_alive "$n"; then
            if [ "$n" != 1 ] && fresh "$n"; then to_join+=("$n"); fi
            launch "$n"
        fi
    done
    for n in "$@"; do wait_node "$n"; done
    for n in "${to_join[@]}"; do join "$n"; done
}

urls() {
    local n out=()
    for n in "${NODES[@]}"; do out+=("amqp://guest:guest@localhost:$(amqp_port "$n")/"); done
    (IFS=,; echo "${out[*]}")
}

tls_url() {
    echo "amqps://guest:guest@localhost:$(tls_port)/?cafile=$DIR/tls/ca.pem&certfile=$DIR/tls/client.pem&keyfile=$DIR/tls/client.key"
}

# Serialise commands on one cluster (pytest workers may call `up` at the same time).
lock() {
    exec 9>"$DIR.lock"
    flock -w "$((WAIT * 2))" 9 || die "another cluster.sh holds $DIR.lock"
}

cmd_up() {
    local started=$SECONDS
    lock
    mkdir -p "$DIR"
    touch "$DIR/$MARKER"
    write_cookie
    write_tls
    if vm_alive 1 && vm_alive 2 && vm_alive 3; then
        info "the cluster $NAME is already running"
    fi
    ensure_nodes "${NODES[@]}"
    wait_members "${NODES[@]}"
    step "cluster $NAME up in $((SECONDS - started)) s: $(node_name 1) $(node_name 2) $(node_name 3)"
    echo "TASKQ_BROKER=$(urls)"
    echo "TLS: $(tls_url)"
    echo "management: http://localhost:$(mgmt_port 1)/ (guest/guest) .. :$(mgmt_port 3)"
}

node_arg() {
    [[ "${1:-}" =~ ^[123]$ ]] || die "expected a node number 1, 2 or 3, got '${1:-}'"
}

cmd_kill() {
    local n="$1" pid deadline=$((SECONDS + 30))
    pid="$(pid_of "$n")" || die "node $(node_name "$n") has no pid file: not running"
    kill -0 "$pid" 2>/dev/null || die "node $(node_name "$n") (pid $pid) is not running"
    info "SIGKILL $(node_name "$n") (pid $pid)"
    kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || die "pid $pid is still alive after SIGKILL"
        sleep 0.1
    done
}

cmd_start() {
    local n="$1" others=() m started=$SECONDS
    lock
    [ -f "$DIR/$MARKER" ] || die "no cluster in $DIR: run 'up' first"
    ensure_nodes "$n"
    for m in "${NODES[@]}"; do
        if vm_alive "$m"; then others+=("$m"); fi
    done
    wait_members "${others[@]}"
    info "$(node_name "$n") runs in the cluster again (after $((SECONDS - started)) s)"
}

cmd_status() {
    local n state members
    for n in "${NODES[@]}"; do
        if ! vm_alive "$n"; then
            state=down
        elif ctl "$n" -q ping >/dev/null 2>&1; then
            state="running (pid $(pid_of "$n"))"
        else
            state="starting or unresponsive (pid $(pid_of "$n"))"
        fi
        printf '%s  amqp :%s  management :%s  %s\n' \
            "$(node_name "$n")" "$(amqp_port "$n")" "$(mgmt_port "$n")" "$state"
    done
    if n="$(live_node)"; then
        members="$(ctl "$n" cluster_status --formatter json 2>/dev/null || echo '{}')"
        echo "members: $(jq -r '(.disk_nodes // []) | join(" ")' <<<"$members")"
        echo "running: $(jq -r '(.running_nodes // []) | join(" ")' <<<"$members")"
    else
        echo "no node answers"
        return 1
    fi
}

# Stop node $1: politely, then SIGKILL if it does not go within 30 s.
stop_node() {
    local n="$1" pid deadline
    vm_alive "$n" || return 0
    pid="$(pid_of "$n")"
    info "stopping $(node_name "$n") (pid $pid)"
    ctl "$n" -q stop --timeout 30 >/dev/null 2>&1 &
    local stopper=$!
    deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        info "$(node_name "$n") did not stop: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    kill "$stopper" 2>/dev/null || true
    wait "$stopper" 2>/dev/null || true
}

cmd_down() {
    local n
    lock
    if [ -d "$DIR" ] && [ ! -f "$DIR/$MARKER" ]; then
        die "$DIR is not a cluster directory (no $MARKER): not removing it"
    fi
    for n in "${NODES[@]}"; do stop_node "$n" & done
    wait
    rm -rf "$DIR"
    step "cluster $NAME is down, $DIR removed"
}

case "${1:-}" in
    up) cmd_up ;;
    kill) node_arg "${2:-}" && cmd_kill "$2" ;;
    start) node_arg "${2:-}" && cmd_start "$2" ;;
    status) cmd_status ;;
    urls)
        if [ "${2:-}" = tls ]; then tls_url; else urls; fi
        ;;
    ctl)
        node_arg "${2:-}"
        n="$2"
        shift 2
        ctl "$n" "$@"
        ;;
    down) cmd_down ;;
    *) die "usage: $0 up | kill N | start N | status | urls [tls] | ctl N ARGS... | down" ;;
esac
