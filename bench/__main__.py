"""``python -m bench``: the side-by-side ratio benchmark (``make bench``); ``--help``.

Exit status 1 if a measurement had more than 1 % errors; with ``--quick``, also if
a ratio fell below its gross-regression floor (``rows.QUICK_FLOORS``, see
``guarded_ratio``); with
``--flood``, if the legitimate login missed its target (see ``bench.flood``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bench import report
from bench.rows import QUICK_FLOORS, QUICK_ROWS, ROW_KEYS, ROWS, guarded_ratio
from bench.run import run_rows

DEFAULTS = {"seconds": 10.0, "warm_up": 3.0, "repeat": 3}
QUICK = {"seconds": 2.0, "warm_up": 1.0, "repeat": 1}


def parser() -> argparse.ArgumentParser:
    parsing = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parsing.add_argument("--backend", choices=("embedded", "redis_postgres"), default="embedded")
    parsing.add_argument("--seconds", type=float, help="measured window, 0.5 to 300 (10; quick 2)")
    parsing.add_argument("--warm-up", type=float, help="seconds before each window (3; quick 1)")
    parsing.add_argument("--repeat", type=int, help="repetitions, medians reported (3; quick 1)")
    parsing.add_argument("--quick", action="store_true", help="the regression guard of make test")
    parsing.add_argument(
        "--only", nargs="+", choices=ROW_KEYS, metavar="ROW", help=" ".join(ROW_KEYS)
    )
    parsing.add_argument("--memory-calls", type=int, default=200_000, help="the memory row's calls")
    parsing.add_argument("--processes", type=int, default=2, help="load processes (2)")
    parsing.add_argument(
        "--previous-key", action="store_true", help="a key rotation under way (previous key set)"
    )
    parsing.add_argument("--flood", type=int, default=0, help="unknown-NIR logins beside one legit")
    parsing.add_argument("--max-pending", type=int, default=32, help="with --flood: the shedding")
    parsing.add_argument(
        "--max-wait", type=float, default=1.0, help="with --flood: the shedding's wait (s)"
    )
    parsing.add_argument(
        "--overload-wait", type=float, default=0.02, help="with --flood: that of a standing queue"
    )
    parsing.add_argument(
        "--max-streams", type=int, default=32, help="with --flood: calls a connection (0: off)"
    )
    parsing.add_argument(
        "--flood-nice", type=int, default=0, help="with --flood: its processes' niceness (0-19)"
    )
    return parsing


def options(args: argparse.Namespace, parsing: argparse.ArgumentParser) -> dict[str, float]:
    chosen = {**(QUICK if args.quick else DEFAULTS)}
    chosen.update({key: getattr(args, key) for key in chosen if getattr(args, key) is not None})
    if not 0.5 <= chosen["seconds"] <= 300 or not 0 <= chosen["warm_up"] <= 60:
        parsing.error("--seconds is 0.5 to 300, --warm-up 0 to 60")
    if not 1 <= chosen["repeat"] <= 20 or not 1 <= args.processes <= 16:
        parsing.error("--repeat is 1 to 20, --processes 1 to 16")
    if not 0 <= args.flood_nice <= 19:
        parsing.error("--flood-nice is 0 to 19")
    if args.max_streams < 0 or args.overload_wait < 0:
        parsing.error("--max-streams and --overload-wait are 0 (off) or more")
    if args.quick and args.backend != "embedded":
        parsing.error("--quick measures the embedded set only")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parsing = parser()
    args = parsing.parse_args(argv)
    chosen = options(args, parsing)
    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's notices
    if args.flood:
        from bench.flood import Shedding, flood

        shedding = Shedding(args.max_pending, args.max_wait, args.overload_wait, args.max_streams)
        return flood(args.backend, args.flood, shedding, chosen, args.processes, args.flood_nice)
    keys = args.only or (QUICK_ROWS if args.quick else ROW_KEYS)
    rows = [row for row in ROWS if row.key in keys and args.backend in row.backends]
    if not rows:
        parsing.error(f"none of {' '.join(keys)} applies to --backend {args.backend}")
    report.header(args.backend, int(chosen["repeat"]), chosen["seconds"], args.processes)
    if args.previous_key:
        print("previous key : set (a key rotation under way)")
    timing = {"warm_up": chosen["warm_up"], "seconds": chosen["seconds"]}
    run_options = {
        "timing": {**timing, "memory_calls": args.memory_calls},
        "repeat": int(chosen["repeat"]),
        "previous_key": args.previous_key,
    }
    outcomes, errors = asyncio.run(run_rows(rows, args.backend, run_options, args.processes))
    report.table(outcomes)
    status = 0
    for error in errors:
        print(f"ERRORS above 1 %: {error}")
        status = 1
    if args.quick:
        for outcome in outcomes:
            floor = QUICK_FLOORS.get(outcome.row.key)
            if floor is not None and not guarded_ratio(outcome.median) >= floor:
                print(f"REGRESSION: {outcome.row.key}, calls/s and CPU per call < {floor} × anchor")
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
