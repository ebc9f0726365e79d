"""``ameli-grpc``: serve, migrate, accounts import, demo-data, purge, audit export, check-config.

Configured by ``AMELI_*``. A bad setting is one ``refusing_to_start`` log line
naming its variable, and exit status 2, whichever the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from ameli_grpc.accounts_import import COLUMNS, ImportRowError, read_csv
from ameli_grpc.bootstrap import audit_events, import_accounts, migrate, purge
from ameli_grpc.config import (
    ConfigurationError,
    Settings,
    load_settings,
    log_refusal,
    warn_unknown_variables,
)
from ameli_grpc.demo import DEMO_CASES, DEMO_PASSWORD
from ameli_grpc.domain.audit import AuditKind
from ameli_grpc.domain.errors import DependencyUnavailable
from ameli_grpc.domain.model import AuditEvent
from ameli_grpc.log import configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Before the settings are read, so that their refusal is a log line in the chosen format.
    configure_logging(_requested_log_format())
    warn_unknown_variables(os.environ)
    try:
        settings = load_settings(**_overrides(args))
        configure_logging(settings.log_format, settings.log_level)
        return int(args.run(settings, args) or 0)
    except ConfigurationError as error:
        log_refusal(error)
        return 2
    except (ImportRowError, DependencyUnavailable, OSError) as error:
        print(f"ameli-grpc: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _requested_log_format() -> str:
    """``AMELI_LOG_FORMAT`` as typed, before it is validated (``console`` unless ``json``)."""
    named = {name.upper(): value for name, value in os.environ.items()}
    return "json" if named.get("AMELI_LOG_FORMAT", "").strip() == "json" else "console"


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    """Settings given as options (``serve --listen``): validated with the others, named so."""
    listen: str | None = getattr(args, "listen", None)
    return {"listen": listen} if listen else {}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ameli-grpc", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the gRPC server (migrates first)")
    serve.add_argument("--listen", help="host:port, overrides AMELI_LISTEN")
    serve.add_argument("--workers", type=int, default=1, help="server processes on one port")
    serve.add_argument(
        "--no-migrate",
        dest="migrate",
        action="store_false",
        help="do not migrate (a database role without DDL rights): refuse unless at head",
    )
    serve.set_defaults(run=_serve)
    migrating = commands.add_parser("migrate", help="Alembic upgrade head")
    migrating.set_defaults(run=_migrate)
    checking = commands.add_parser(
        "check-config", help="validate the settings and print what they configure (no secret)"
    )
    checking.add_argument(
        "--connect", action="store_true", help="also reach each dependency; exit 1 if one fails"
    )
    checking.set_defaults(run=_check_config)
    accounts = commands.add_parser("accounts", help="manage accounts").add_subparsers(
        required=True, metavar="ACTION"
    )
    importing = accounts.add_parser("import", help="load accounts from a CSV file")
    importing.add_argument("file", type=Path, help="columns: " + ",".join(COLUMNS))
    importing.add_argument(
        "--update",
        action="store_true",
        help="replace the accounts that exist already (default: skip them, untouched)",
    )
    importing.set_defaults(run=_import)
    demo = commands.add_parser(
        "demo-data", help="load one demo NIR per case of the guide (development only)"
    )
    demo.set_defaults(run=_demo)
    purge = commands.add_parser(
        "purge", help="delete expired trusted devices, provisional codes and account setups"
    )
    purge.add_argument(
        "--audit-older-than",
        type=_positive_days,
        metavar="DAYS",
        help="also delete the audit rows older than DAYS days",
    )
    purge.set_defaults(run=_purge)
    _add_audit_commands(commands)
    return parser


def _add_audit_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser("audit", help="the audit trail").add_subparsers(
        required=True, metavar="ACTION"
    )
    export = audit.add_parser("export", help="write the audit rows as JSON lines, oldest first")
    export.add_argument(
        "--since", type=_instant, metavar="T", help="ISO 8601; the rows at or after T"
    )
    export.add_argument("--until", type=_instant, metavar="T", help="ISO 8601; the rows before T")
    export.add_argument(
        "--kind",
        action="append",
        choices=[kind.value for kind in AuditKind],
        metavar="K",
        help="only the events of kind K (repeatable): "
        + ", ".join(kind.value for kind in AuditKind),
    )
    export.set_defaults(run=_export_audit)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from ameli_grpc.serving import serve  # the server stack only for this command

    return serve(settings, args.workers, migrate=args.migrate)


def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    print(f"database at revision {asyncio.run(migrate(settings))} (head)")
    return 0


def _check_config(settings: Settings, args: argparse.Namespace) -> int:
    from ameli_grpc.preflight import check_config  # the dependency clients only for this command

    return check_config(settings, connect=args.connect, out=sys.stdout)


def _import(settings: Settings, args: argparse.Namespace) -> int:
    counts = asyncio.run(import_accounts(settings, read_csv(args.file), update=args.update))
    kept = " (existing accounts; --update replaces them)" if counts.skipped else ""
    print(f"created {counts.created}, updated {counts.updated}, skipped {counts.skipped}{kept}")
    return 0


def _demo(settings: Settings, _args: argparse.Namespace) -> int:
    beyond = settings.beyond_development()
    if beyond:
        raise ConfigurationError(
            "demo-data loads accounts whose password is published: development only "
            f"(a loopback AMELI_LISTEN and no caller keys), and {', '.join(beyond)} is set",
            ",".join(beyond),
        )
    counts = asyncio.run(import_accounts(settings, (case.row for case in DEMO_CASES)))
    print(f"Demo accounts (password for all: {DEMO_PASSWORD})")
    for case in DEMO_CASES:
        kept = case.row.nir[:13] in counts.skipped_nirs
        note = "  (exists already: left as it is)" if kept else ""
        print(f"  {case.row.nir}  {case.case}{note}")
    return 0


def _purge(settings: Settings, args: argparse.Namespace) -> int:
    now, days = datetime.now(UTC), args.audit_older_than
    audit_before = now - timedelta(days=days) if days else None
    for table, count in asyncio.run(purge(settings, now, audit_before=audit_before)).items():
        if table == "audit_events":
            print(f"{table}: {count} row(s) older than {days} day(s) deleted")
        else:
            print(f"{table}: {count} expired row(s) deleted")
    return 0


def _export_audit(settings: Settings, args: argparse.Namespace) -> int:
    if args.since and args.until and args.since >= args.until:
        print("ameli-grpc: --since must be before --until", file=sys.stderr)
        return 2
    try:
        asyncio.run(_write_audit(settings, args, sys.stdout))
    except BrokenPipeError:  # the reader is gone (`| head`): stop quietly, no traceback
        _silence_stdout()
    return 0


async def _write_audit(settings: Settings, args: argparse.Namespace, out: TextIO) -> None:
    events = audit_events(settings, since=args.since, until=args.until, kinds=args.kind or ())
    async with aclosing(events):  # a broken pipe still closes the reader and the pool
        async for event in events:
            out.write(audit_json_line(event) + "\n")
    out.flush()


def audit_json_line(event: AuditEvent) -> str:
    """One exported audit row: always the same keys, the time in RFC 3339 UTC."""
    return json.dumps(
        {
            "kind": event.kind,
            "time": event.occurred_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "nir_ref": event.nir_ref,
            "account_id": event.account_id,
            "caller": event.caller,
            "advisor_id": event.advisor_id,
            "reason": event.reason,
            "client_ip": event.client_ip,
            "user_agent": event.user_agent,
            "request_id": event.request_id,
            "detail": event.detail,
        },
        ensure_ascii=False,
    )


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush finds no closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file (captured): nothing will be flushed to a pipe
        pass


def _instant(text: str) -> datetime:
    """An ISO 8601 date or time; without an offset it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2024-05-01 or 2024-05-01T08:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _positive_days(text: str) -> int:
    """A whole number of days, at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number of days")
    return int(text)


if __name__ == "__main__":
    raise SystemExit(main())
