"""The load generator alone, against a service that runs elsewhere (e.g. ``--workers 2``).

    python -m bench.remote --accounts-csv 64 > accounts.csv   # then, by the service:
        ameli-grpc accounts import accounts.csv
    python -m bench.remote --target HOST:PORT --call lock_status --in-flight 16 \\
        --portal-key KEY --mobile-key KEY [--seconds 10] [--processes 2] [--channels 4]

The service must know the two keys (``AMELI_PORTAL_API_KEYS``, ``AMELI_MOBILE_API_KEYS``)
and the accounts of the CSV. Prints calls/s and latencies; the server's CPU is not read
(it is on another machine). The full web login needs the emails, so it is not offered.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys

from bench.common import MOBILE_KEY, PASSWORD, PORTAL_KEY, email, nir
from bench.load import LoadPool, Stream


def write_accounts(count: int) -> None:
    """The CSV of ``ameli-grpc accounts import``: the accounts the load logs in as."""
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(("nir", "password", "email", "email_validated", "mobile_phone", "affiliation"))
    for serial in range(count):
        out.writerow((nir(serial), PASSWORD, email(serial), "true", "", "affiliated"))


async def drive(args: argparse.Namespace) -> int:
    pool = LoadPool(args.processes)
    try:
        done = await pool.measure(
            args.target,
            [Stream(args.call, args.in_flight)],
            args.warm_up,
            args.seconds,
            channels=args.channels,
            keys=(args.portal_key, args.mobile_key),
        )
    finally:
        pool.close()
    result = done.streams[0]
    p50, p99 = (result.percentile(p) * 1000 for p in (50, 99))
    print(f"{args.call} × {args.in_flight} in flight against {args.target}:")
    print(f"  {done.rate():.1f} calls/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    if result.errors or result.shed:
        print(f"  errors: {dict(result.errors)}, shed: {result.shed}")
    return 0 if result.error_rate <= 0.01 else 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.remote", description=__doc__)
    parser.add_argument("--accounts-csv", type=int, metavar="N", help="print N accounts, exit")
    parser.add_argument("--target", help="host:port of the service")
    parser.add_argument("--call", choices=("lock_status", "login_mobile"), default="lock_status")
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warm-up", type=float, default=3.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--channels", type=int, default=4, help="connections per process")
    parser.add_argument("--portal-key", default=PORTAL_KEY)
    parser.add_argument("--mobile-key", default=MOBILE_KEY)
    args = parser.parse_args()
    if args.accounts_csv:
        write_accounts(args.accounts_csv)
        return 0
    if not args.target:
        parser.error("--target host:port, or --accounts-csv N")
    return asyncio.run(drive(args))


if __name__ == "__main__":
    sys.exit(main())
