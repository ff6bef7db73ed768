#!/usr/bin/env bash
# Make sure .venv exists and has taskq installed from this checkout (pip install -e '.[dev]').
#
# Idempotent: a venv that works and was installed from the current pyproject.toml is left as
# it is; a missing or broken one is (re)created. Uses python3 (override with PYTHON=...), which
# must be 3.11 or newer. On Debian, `python3 -m venv` needs the python3-venv package: it is
# installed with apt-get when missing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.taskq-installed"

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: install Python 3.11+"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "taskq needs Python 3.11+, $PYTHON is $("$PYTHON" --version 2>&1)"

venv_works() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1
}

create_venv() {
    step "creating the virtual environment $VENV"
    rm -rf "$VENV"
    if ! run "$PYTHON" -m venv "$VENV"; then
        # Debian ships venv's ensurepip in a separate package.
        rm -rf "$VENV"
        apt_install python3-venv
        run "$PYTHON" -m venv "$VENV"
    fi
}

# What the installed venv must match: the dependencies and this checkout's location.
wanted_stamp() {
    { sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1; echo "$ROOT"; } | tr '\n' ' '
}

installed_here() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(wanted_stamp)" ] \
        && [ -x "$VENV/bin/taskq-worker" ] \
        && "$VENV/bin/python" -c '
import os, sys, taskq
sys.exit(os.path.dirname(os.path.realpath(taskq.__file__)) != os.path.realpath(sys.argv[1]))
' "$ROOT/taskq" 2>/dev/null
}

if venv_works; then
    info "virtual environment $VENV exists"
else
    create_venv
fi

if installed_here; then
    info "taskq is installed in $VENV from $ROOT (pyproject.toml unchanged)"
else
    step "installing taskq and its dev tools into $VENV"
    run "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q \
        -e "$ROOT[dev]"
    wanted_stamp >"$STAMP"
fi
