"""``python -m benchmarks.faults``: the fault suite against the real broker (see __init__).

Examples:
    python -m benchmarks.faults                  # full run: writes benchmarks/results/faults.*
    python -m benchmarks.faults --short          # the test command's (under 2 minutes)
    python -m benchmarks.faults --only multi-queue,poison --seeds 10

Exit status: 0 every target met, 1 some target missed or a scenario broke, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from taskq.cli.common import run_loop
from taskq.redact import redact_url
from taskq.settings import Settings

from .. import broker, harness
from . import cancels, chords, fuzz, kills, nodes, outages, poison
from .report import Row, header, markdown, to_json
from .run import LOGS_ENV
from .sizes import Sizes, sizes

Scenario = Callable[[Sizes], Awaitable[list[Row]]]
SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "kill-storm": ("SIGKILL storm", kills.kill_storm),
    "multi-queue": ("multi-queue kill", kills.multi_queue),
    "connection-drop": ("connections closed", outages.connection_drop),
    "broker-restart": ("broker restart", outages.broker_restart),
    "store-outage": ("result-store outage", outages.store_outage),
    "poison": ("poison messages", poison.poison),
    "producer-fuzz": ("producer fuzz", fuzz.producer_fuzz),
    "node-kill": ("cluster node kill", nodes.node_kill),
    "cancel-storm": ("cancel storm", cancels.cancel_storm),
    "chord": ("chord through kills and restarts", chords.chord_faults),
}
RESULTS = harness.REPO / "benchmarks" / "results"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--short",
        action="store_true",
        help="small task counts (under 2 minutes in all); writes no files unless "
        "--json/--markdown say where",
    )
    p.add_argument("--only", help=f"comma-separated, of {','.join(SCENARIOS)}")
    p.add_argument("--tasks", type=int, help="tasks per scenario (poison and multi-queue aside)")
    p.add_argument(
        "--seeds",
        type=int,
        help="multi-queue seeds and connection-drop runs (full 5 and 3, short 2 and 1)",
    )
    p.add_argument("--json", type=Path, help="write JSON here (full run: results/faults.json)")
    p.add_argument(
        "--markdown", type=Path, help="write the table here (full run: results/faults.md)"
    )
    p.add_argument("--verbose", action="store_true", help="show taskq's own warnings")
    p.add_argument("--logs", type=Path, help="keep every worker's log in this directory")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in (args.only or ",".join(SCENARIOS)).split(",") if s.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if not args.short:
        args.json = args.json or RESULTS / "faults.json"
        args.markdown = args.markdown or RESULTS / "faults.md"
    return args


async def scenario(name: str, chosen: Sizes) -> list[Row]:
    """Run one scenario; a scenario that breaks becomes a row with its error."""
    title, run = SCENARIOS[name]
    harness.progress(f"{title}...")
    started = time.monotonic()
    try:
        rows = await run(chosen)
    except Exception as exc:
        logging.getLogger("benchmarks.faults").debug("scenario %s broke", name, exc_info=True)
        rows = [Row(title, "-", settled=False, error=_brief(exc))]
    for row in rows:
        row.judge()
        harness.progress(f"  {row.scenario}: {row.verdict()}")
    harness.progress(f"  ({time.monotonic() - started:.1f} s)")
    return rows


def _brief(exc: BaseException) -> str:
    """The error's type and first line, and the end of the rest (a worker's last words)."""
    text = f"{type(exc).__name__}: {exc}"
    first, _, rest = text.partition("\n")
    return first if not rest else f"{first} ... {rest[-1200:]}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    main = asyncio.current_task()
    assert main is not None
    # SIGTERM ends the run like Ctrl-C: every finally runs (the broker is started again).
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    machine = await broker.machine()
    machine["cpu"] = cpu_model()
    chosen = sizes(short=args.short, tasks=args.tasks, seeds=args.seeds)
    started = time.monotonic()
    rows = [row for name in args.only for row in await scenario(name, chosen)]
    seconds = time.monotonic() - started
    chosen_sizes = {**dataclasses.asdict(chosen), "redis": redact_url(chosen.redis)}
    # The transport every App and worker of the run uses (TASKQ_TRANSPORT, or the default).
    transport = Settings().transport
    options = {"short": args.short, "only": args.only, "sizes": chosen_sizes,
               "transport": transport}  # fmt: skip
    return {"rows": rows, "machine": machine, "options": options, "seconds": seconds}


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
        os.environ[LOGS_ENV] = str(args.logs)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    if not args.verbose:  # the libraries' own reports of the faults the suite injects
        for name in ("taskq", "aiormq", "aio_pika", "redis"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        out = run_loop(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: the runs so far were cleaned up", file=sys.stderr)
        return 130
    rows: list[Row] = out["rows"]
    mode = ("short" if args.short else "full") + f", {out['options']['transport']} transport"
    text = f"{header(out['machine'], mode, out['seconds'])}\n\n{markdown(rows)}\n"
    print(f"\n{text}")
    if args.json:
        data = to_json(rows, out["machine"], out["options"], out["seconds"])
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(text)
    return 0 if all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
