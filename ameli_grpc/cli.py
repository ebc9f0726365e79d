"""``ameli-grpc``: serve, migrate, accounts import, demo-data, purge. Configured by ``AMELI_*``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from ameli_grpc.accounts_import import COLUMNS, ImportRowError, read_csv
from ameli_grpc.bootstrap import import_accounts, migrate, purge
from ameli_grpc.config import Settings
from ameli_grpc.demo import DEMO_CASES, DEMO_PASSWORD
from ameli_grpc.domain.errors import DependencyUnavailable
from ameli_grpc.log import configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_format)
    try:
        return int(args.run(settings, args) or 0)
    except (ImportRowError, DependencyUnavailable, OSError) as error:
        print(f"ameli-grpc: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ameli-grpc", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the gRPC server (migrates first)")
    serve.add_argument("--listen", help="host:port, overrides AMELI_LISTEN")
    serve.add_argument("--workers", type=int, default=1, help="server processes on one port")
    serve.set_defaults(run=_serve)
    migrating = commands.add_parser("migrate", help="Alembic upgrade head")
    migrating.set_defaults(run=lambda s, a: asyncio.run(migrate(s)))
    accounts = commands.add_parser("accounts", help="manage accounts").add_subparsers(
        required=True, metavar="ACTION"
    )
    importing = accounts.add_parser("import", help="load accounts from a CSV file")
    importing.add_argument("file", type=Path, help="columns: " + ",".join(COLUMNS))
    importing.set_defaults(run=_import)
    demo = commands.add_parser("demo-data", help="load one demo NIR per case of the guide")
    demo.set_defaults(run=_demo)
    purge = commands.add_parser(
        "purge", help="delete expired trusted devices, provisional codes and account setups"
    )
    purge.set_defaults(run=_purge)
    return parser


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from ameli_grpc.serving import serve  # the server stack only for this command

    if args.listen:
        settings = settings.model_copy(update={"listen": args.listen})
    return serve(settings, args.workers)


def _import(settings: Settings, args: argparse.Namespace) -> int:
    count = asyncio.run(import_accounts(settings, read_csv(args.file)))
    print(f"{count} account(s) imported")
    return 0


def _demo(settings: Settings, _args: argparse.Namespace) -> int:
    asyncio.run(import_accounts(settings, (case.row for case in DEMO_CASES)))
    print(f"Demo accounts (password for all: {DEMO_PASSWORD})")
    for case in DEMO_CASES:
        print(f"  {case.row.nir}  {case.case}")
    return 0


def _purge(settings: Settings, _args: argparse.Namespace) -> int:
    for table, count in asyncio.run(purge(settings, datetime.now(UTC))).items():
        print(f"{table}: {count} expired row(s) deleted")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
