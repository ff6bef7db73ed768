#!/usr/bin/env bash
# Make sure .venv holds exactly what uv.lock says: taskq (editable) and its dev tools.
#
# `uv sync --frozen --extra dev` installs the committed lock and nothing newer, so a release
# elsewhere never changes what the README's commands run; it also removes what the lock does
# not list. uv itself (a pinned release, from the package index) lives in .tools/uv-VERSION,
# outside the project's venv. Idempotent and fast when nothing changed. Uses python3 (override
# with PYTHON=...), which must be 3.11 or newer. On Debian, `python3 -m venv` needs the
# python3-venv package: it is installed with apt-get when missing.
#
# `--latest` (or LATEST=1) instead builds .venv-latest from the newest releases that
# pyproject.toml's ranges allow, ignoring the lock: `scripts/test.sh --latest` runs the suite
# there to see dependency drift before users do.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: install Python 3.11+"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "taskq needs Python 3.11+, $PYTHON is $("$PYTHON" --version 2>&1)"

# uv must not download interpreters (this machine's Python is the one to use).
export UV_PYTHON_DOWNLOADS=never

make_venv() {
    # $1: where. Debian ships venv's ensurepip in a separate package.
    if ! "$PYTHON" -m venv "$1" 2>/dev/null; then
        rm -rf "$1"
        apt_install python3-venv
        run "$PYTHON" -m venv "$1"
    fi
}

ensure_uv() {
    if [ -x "$UV" ] && [ "$("$UV" --version 2>/dev/null | cut -d' ' -f2)" = "$UV_VERSION" ]; then
        return 0
    fi
    step "installing uv $UV_VERSION into $UV_HOME"
    rm -rf "$UV_HOME"
    make_venv "$UV_HOME"
    run "$UV_HOME/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q \
        "uv==$UV_VERSION"
}

ensure_uv
cd "$ROOT"
if [ "${1:-}" = "--latest" ] || [ "${LATEST:-}" = "1" ]; then
    step "building $LATEST_VENV from the newest releases pyproject.toml allows (not the lock)"
    run "$UV" venv -q --allow-existing --python "$PYTHON" "$LATEST_VENV"
    run "$UV" pip install -q --python "$LATEST_VENV/bin/python" --upgrade -e "$ROOT[dev]"
    exit 0
fi
step "syncing $VENV with uv.lock (uv sync --frozen --extra dev)"
UV_PROJECT_ENVIRONMENT="$VENV" run "$UV" sync -q --frozen --extra dev --python "$PYTHON"
