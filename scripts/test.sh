#!/usr/bin/env bash
# Run every check: `bash scripts/test.sh` from a fresh clone (CI runs exactly this).
#
# 1. syncs .venv with the committed lock (uv.lock: `uv sync --frozen --extra dev`, see
#    scripts/ensure-venv.sh), so a dependency's new release cannot change what runs here;
# 2. makes sure RabbitMQ (127.0.0.1:5672), Redis (127.0.0.1:6379) and PostgreSQL
#    (127.0.0.1:5432) run: starts them, or installs them with apt-get; and that Debian's
#    chromium is installed (the dashboard's browser tests); starts the 3-node test cluster
#    (scripts/cluster.sh up: ports 5701..5703, 5711) and stops and removes it when the script
#    exits, however it exits;
# 3. ruff check and ruff format --check on taskq, tests, examples, benchmarks and docs/hooks
#    (those that exist: `ruff format` fixes what the second one finds);
# 4. mypy --strict (pyproject.toml) on taskq, then on each example directory on its own (every
#    example has a tasks.py: one mypy run cannot hold two modules named `tasks`);
# 5. mkdocs build --strict: the documentation site (mkdocs.yml, docs/) into site/, every link
#    and anchor checked (its code samples run in pytest: tests/test_docs_samples.py);
# 6. pytest on tests/ (the typing tests run mypy on tests/typing themselves), under coverage:
#    first every test not marked serial, TEST_WORKERS (default 4) at a time, then the serial
#    ones (they stop the broker); then the Redis store's tests once more on the oldest
#    redis-py the `redis` extra allows (the lock holds the newest);
# 7. the coverage of taskq, lines and branches, subprocesses included (the taskq-worker
#    processes, the supervisor's children and the taskq CLI calls the tests start): the
#    report, then one line with the line, branch and total figures. Below fail_under
#    (pyproject.toml) is a failure when the whole suite ran (no extra arguments).
#
# `--latest` (first argument) runs all of this in .venv-latest instead: the newest releases
# that pyproject.toml's ranges allow, not the lock. It shows dependency drift before users see
# it; the packages that differ from the lock are listed first. See docs/contributing.md.
#
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -x -k priority`). Setting up the
# environment stops at the first error; the checks all run, then the script exits 1 if any
# failed (pytest's "no tests collected", exit 5, is a failure too) and lists them. pytest is
# stopped after TESTS_TIMEOUT seconds (default 1800), which counts as a failure (exit 124).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [ "${1:-}" = "--latest" ]; then
    shift
    bash "$ROOT/scripts/ensure-venv.sh" --latest
    VENV="$LATEST_VENV"
    step "packages that differ from uv.lock in $VENV"
    "$VENV/bin/python" "$ROOT/scripts/lock_drift.py" "$ROOT/uv.lock" || true
else
    bash "$ROOT/scripts/ensure-venv.sh"
fi
bash "$ROOT/scripts/ensure-services.sh" rabbitmq redis postgres
ensure_chromium
# The cluster tests (node kill, TLS) need it; nothing of it may outlive this script.
trap 'bash "$ROOT/scripts/cluster.sh" down || true' EXIT
bash "$ROOT/scripts/cluster.sh" up

cd "$ROOT"

failed=()

# Run one check; remember it if it fails, and go on, so that one run reports every problem.
check() {
    local name="$1"
    shift
    local status=0
    run "$@" || status=$?
    if [ "$status" -ne 0 ]; then
        failed+=("$name (exit $status)")
        info "FAILED: $name (exit $status)"
    fi
    return 0
}

lint_dirs=()
for dir in taskq tests examples benchmarks docs/hooks; do
    if [ -d "$dir" ]; then lint_dirs+=("$dir"); fi
done
step "ruff"
check "ruff check" "$VENV/bin/ruff" check "${lint_dirs[@]}"
check "ruff format" "$VENV/bin/ruff" format --check "${lint_dirs[@]}"

step "mypy"
check "mypy taskq" "$VENV/bin/mypy" taskq
for example in examples/*/; do
    if [ -d "$example" ]; then check "mypy ${example%/}" "$VENV/bin/mypy" "${example%/}"; fi
done

step "docs"
check "mkdocs build --strict" env NO_MKDOCS_2_WARNING=1 \
    "$VENV/bin/mkdocs" build --strict --quiet --site-dir "$ROOT/site"

step "pytest"
# pytest exits 5 when it collected no tests: check() counts that as a failure like any other.
# Each test has its own timeout (pyproject.toml); this cap catches a run that hangs anyway,
# e.g. on a thread a test left blocked, which keeps the interpreter from exiting.
"$VENV/bin/coverage" erase
if [ "$#" -gt 0 ]; then
    check "pytest" timeout --kill-after=30 "${TESTS_TIMEOUT:-1800}" \
        "$VENV/bin/coverage" run -m pytest "$@"
else
    # Most tests wait on the broker, not the CPU, and each uses its own names: they run in
    # TEST_WORKERS processes at once (pytest-xdist). Tests that stop the broker (marked
    # serial) would break the others, so they run afterwards, on their own.
    check "pytest (parallel)" timeout --kill-after=30 "${TESTS_TIMEOUT:-1800}" \
        "$VENV/bin/coverage" run -m pytest -n "${TEST_WORKERS:-4}" -m "not serial" --durations=25
    check "pytest (serial)" timeout --kill-after=30 "${TESTS_TIMEOUT:-1800}" \
        "$VENV/bin/coverage" run -m pytest -m serial
    # The lock holds the newest redis-py; the extra's oldest must work too. `uv run --with`
    # layers it over the venv for this one run (the venv itself is not changed).
    step "the Redis store on the oldest redis-py the extra allows ($OLDEST_REDIS)"
    check "pytest (redis-py $OLDEST_REDIS)" env UV_PYTHON_DOWNLOADS=never \
        UV_PROJECT_ENVIRONMENT="$VENV" "$UV" run -q --frozen --extra dev --no-sync \
        --with "redis==$OLDEST_REDIS" python -m pytest -q -p no:cacheprovider -n 2 -k redis \
        tests/integration/test_redis_store.py tests/integration/test_redis_outages.py \
        tests/integration/test_redis_send_and_replay.py tests/unit/test_redis_wire.py \
        tests/integration/test_result_store_contract.py
fi

step "coverage of taskq (lines and branches, subprocesses included)"
check "coverage combine" "$VENV/bin/coverage" combine -q
fail_under=()
if [ "$#" -gt 0 ]; then
    fail_under=(--fail-under=0) # a partial run: report, but do not judge
fi
check "coverage" "$VENV/bin/coverage" report "${fail_under[@]}"
"$VENV/bin/coverage" json -q --fail-under=0 -o coverage.json \
    && "$VENV/bin/python" - <<'PY' || true
import json

totals = json.load(open("coverage.json"))["totals"]
lines = 100 * totals["covered_lines"] / max(1, totals["num_statements"])
branches = 100 * totals["covered_branches"] / max(1, totals["num_branches"])
print(f"coverage: lines {lines:.1f} %, branches {branches:.1f} %, "
      f"total {totals['percent_covered']:.1f} %")
PY

if [ "${#failed[@]}" -gt 0 ]; then
    printf '\nFAILED checks:\n' >&2
    printf '  - %s\n' "${failed[@]}" >&2
    exit 1
fi
step "all checks passed"
