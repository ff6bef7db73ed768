#!/usr/bin/env bash
# The quick start, end to end: `bash scripts/quickstart.sh` from a fresh clone.
#
# 1. syncs .venv with the committed lock (uv.lock; see scripts/ensure-venv.sh);
# 2. makes sure RabbitMQ runs on 127.0.0.1:5672 (starts it, or installs it with apt-get);
# 3. starts a worker in the background: `taskq-worker tasks:app` in examples/quickstart;
# 4. sends tasks and prints their results (`python send.py`: add(4, 6) = 10 ...);
# 5. stops the worker with SIGTERM and checks that it exited with 0.
#
# Idempotent; needs no input. Set TASKQ_BROKER to use another broker (then nothing is
# installed or started).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

bash "$ROOT/scripts/ensure-venv.sh"
if [ -z "${TASKQ_BROKER:-}" ]; then
    bash "$ROOT/scripts/ensure-services.sh" rabbitmq
fi

EXAMPLE="$ROOT/examples/quickstart"
WORKER_LOG="$(mktemp -t taskq-quickstart-worker.XXXXXX.log)"
WORKER_PID=""

# If anything below fails, do not leave the worker running.
cleanup() {
    if [ -n "$WORKER_PID" ] && kill -0 "$WORKER_PID" 2>/dev/null; then
        kill -TERM "$WORKER_PID" 2>/dev/null || true
        wait "$WORKER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

show_worker_log() {
    info "worker log ($WORKER_LOG):"
    sed 's/^/    | /' "$WORKER_LOG" >&2
}

step "starting a worker: taskq-worker tasks:app (in examples/quickstart, log in $WORKER_LOG)"
cd "$EXAMPLE"
"$VENV/bin/taskq-worker" tasks:app --log-level info >"$WORKER_LOG" 2>&1 </dev/null &
WORKER_PID=$!
info "worker pid $WORKER_PID"

# The worker logs "consuming" once it is ready. Tasks sent earlier would wait in their queue
# anyway; waiting here makes a worker that cannot start fail fast, with its log.
waited=0
until grep -q "consuming" "$WORKER_LOG"; do
    if ! kill -0 "$WORKER_PID" 2>/dev/null; then
        show_worker_log
        die "the worker exited before it started consuming"
    fi
    if [ "$waited" -ge 300 ]; then  # tenths of a second: 30 s
        show_worker_log
        die "the worker did not start consuming within 30 s"
    fi
    sleep 0.1
    waited=$((waited + 1))
done
info "worker is consuming"

step "sending tasks: python send.py"
if ! run "$VENV/bin/python" send.py; then
    show_worker_log
    die "send.py failed"
fi

step "stopping the worker (SIGTERM)"
kill -TERM "$WORKER_PID"
status=0
wait "$WORKER_PID" || status=$?
WORKER_PID=""
show_worker_log
[ "$status" -eq 0 ] || die "the worker exited with status $status (expected 0)"
info "the worker exited with status 0"
rm -f "$WORKER_LOG"

step "quick start done"
