"""Print the installed packages whose version differs from uv.lock (for `test.sh --latest`).

Usage: python scripts/lock_drift.py uv.lock. Reads the lock with tomllib and the installed
distributions with importlib.metadata; prints `name: locked -> installed`, one a line.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(lock_path: str) -> int:
    with open(lock_path, "rb") as f:
        lock = tomllib.load(f)
    locked: dict[str, set[str]] = {}
    for package in lock.get("package", []):
        locked.setdefault(_norm(package["name"]), set()).add(str(package.get("version", "")))
    changed = 0
    for dist in sorted(importlib.metadata.distributions(), key=lambda d: _norm(d.name)):
        name = _norm(dist.name)
        versions = locked.get(name)
        if versions is None:
            print(f"{name}: not in the lock -> {dist.version}")
            changed += 1
        elif dist.version not in versions:
            print(f"{name}: {' / '.join(sorted(versions))} -> {dist.version}")
            changed += 1
    print(f"{changed} package(s) differ from the lock")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
