# shellcheck shell=bash
# Helpers sourced by the other scripts: logging, root commands, apt, port checks.
# Every script works with no standard input (CI=true) and stops at the first failure.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"

step() { printf '\n==> %s\n' "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

# Print a command, then run it.
run() {
    printf '    $ %s\n' "$*" >&2
    "$@"
}

# Run a command as root: directly when we are root, else through sudo. Without a terminal
# (CI, piped input) sudo must not wait for a password that nobody can type: use sudo -n.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        run "$@"
    elif command -v sudo >/dev/null 2>&1; then
        if [ -t 0 ] && [ "${CI:-}" != "true" ]; then
            run sudo "$@"
        else
            run sudo -n "$@"
        fi
    else
        die "need root to run '$*', and sudo is not installed"
    fi
}

# apt-get install the given Debian packages (noninteractive), after an apt-get update.
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand"
    step "installing $* with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update </dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" \
        </dev/null
}

# Whether something accepts TCP connections on host $1 port $2 (bash's /dev/tcp, 2 s max).
port_open() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# Wait until host $1 port $2 accepts connections, for at most $3 seconds; $4 names it.
wait_port() {
    local host="$1" port="$2" limit="$3" what="$4" waited=0
    info "waiting up to ${limit} s for $what on $host:$port"
    until port_open "$host" "$port"; do
        if [ "$waited" -ge "$limit" ]; then
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    info "$what is up on $host:$port (after ${waited} s)"
}

# The path of an installed program, also looking in /usr/sbin (not on a normal user's PATH).
find_program() {
    local name="$1" dir
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        return 0
    fi
    for dir in /usr/sbin /sbin /usr/local/sbin; do
        if [ -x "$dir/$name" ]; then
            echo "$dir/$name"
            return 0
        fi
    done
    return 1
}

# Debian's chromium at /usr/bin/chromium, for the dashboard's browser tests (Playwright drives
# it; no browser is downloaded). Installed with apt-get when missing. Idempotent.
ensure_chromium() {
    step "Chromium for the browser tests"
    if [ -x /usr/bin/chromium ]; then
        info "chromium is installed ($(/usr/bin/chromium --version 2>/dev/null || echo '?'))"
        return 0
    fi
    apt_install chromium
    [ -x /usr/bin/chromium ] || die "chromium did not install at /usr/bin/chromium"
}

# uv, pinned: it installs uv.lock into the venv (scripts/ensure-venv.sh). It lives outside the
# project's venv, which `uv sync` keeps to exactly what the lock lists.
UV_VERSION="0.13.9"
UV_HOME="$ROOT/.tools/uv-$UV_VERSION"
UV="$UV_HOME/bin/uv"
# Where `scripts/test.sh --latest` runs: the newest releases the ranges allow.
LATEST_VENV="$ROOT/.venv-latest"
# The oldest redis-py that the `redis` extra allows (pyproject.toml): the test command runs the
# Redis store's tests on it too.
OLDEST_REDIS="5.0.8"
