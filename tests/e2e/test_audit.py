"""The audit trail read back with ``ameli-grpc audit export``, on both adapter sets (SPEC §8).

A scenario drives a real server through every event; the export is read as
an operator would, with the command line in a child process.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from ameli.auth.v1 import auth_pb2

from ameli_grpc.adapters.sql import maintenance
from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.migrate import upgrade
from ameli_grpc.adapters.sql.repositories import SqlAuditLog
from ameli_grpc.cli import main
from ameli_grpc.domain.audit import AuditKind
from ameli_grpc.domain.model import AuditEvent
from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import EMAIL, PASSWORD, ServiceUnderTest, nir, refused
from tests.e2e.replicas import environment
from tests.support.mail import extract_code

KEYS = [
    "kind",
    "time",
    "nir_ref",
    "account_id",
    "caller",
    "advisor_id",
    "reason",
    "client_ip",
    "user_agent",
    "request_id",
    "detail",
]
PERSON = auth_pb2.ClientInfo(ip="198.51.100.7", user_agent="Mozilla/5.0 (Windows NT 10.0) Edg/125")
SPRAYER = auth_pb2.ClientInfo(ip="203.0.113.9", user_agent="curl/8.5")
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
ADVISOR = "conseiller-3646"
REASON = "l'assuré a appelé le 3646"


# Implemented by its own RPC (RevokeTrustedDevices); not produced by this scenario.
@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``main`` configures logging: undo it afterwards."""
    yield
    structlog.reset_defaults()


async def export(database_url: str, *options: str) -> list[dict[str, Any]]:
    """``ameli-grpc audit export`` in a child process: its lines, parsed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ameli_grpc.cli",
        "audit",
        "export",
        *options,
        env=environment({"database_url": database_url}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


async def run(*args: str) -> int:
    """``main`` in a thread (it runs its own event loop), the environment as set by the test."""
    return await asyncio.to_thread(main, list(args))


def secrets_of(service: ServiceUnderTest) -> list[str]:
    """What must never be in an audit row: each NIR (with and without key), email, password."""
    return [EMAIL, PASSWORD, "faux-Mot-de-passe", *(nir(n)[:13] for n in range(200, 216))]


async def drive_every_event(service: ServiceUnderTest) -> dict[str, list[str]]:
    """A day at the service producing every kind of event; the codes and tokens it saw."""
    seen: dict[str, list[str]] = {"codes": [], "tokens": [], "logins": []}
    for serial in (200, 201, 202, 203, 204):
        await service.add_account(nir(serial), mobile_phone="06 12 34 56 78")

    # authenticated + device_trusted: the whole login from the person's browser
    login_id = (await service.login(nir(200), client=PERSON)).code_required.login_id
    code = await request_code(service, login_id)
    verified = await service.portal.VerifyCode(
        auth_pb2.VerifyCodeRequest(login_id=login_id, code=code, trust_device=True, client=PERSON)
    )
    seen["codes"].append(code)
    seen["tokens"].append(verified.device_token)
    seen["logins"].append(login_id)
    service.clock.advance(minutes=1)

    # password_failed ×3 + locked_password
    for _ in range(3):
        await refused(service.login(nir(201), password="faux-Mot-de-passe", client=PERSON))
    service.clock.advance(minutes=1)

    # code_failed ×3 + locked_code
    login_id = (await service.login(nir(202), client=PERSON)).code_required.login_id
    code = await request_code(service, login_id)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(3):
        await refused(
            service.portal.VerifyCode(
                auth_pb2.VerifyCodeRequest(login_id=login_id, code=wrong, client=PERSON)
            )
        )
    seen["codes"] += [code, wrong]
    seen["logins"].append(login_id)
    service.clock.advance(minutes=1)

    # locked_quota: the third code request with a quota of two
    login_id = (await service.login(nir(203), client=PERSON)).code_required.login_id
    seen["codes"] += [await request_code(service, login_id) for _ in range(2)]
    await refused(
        service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id, client=PERSON))
    )
    seen["logins"].append(login_id)
    service.clock.advance(minutes=1)

    # suspended: failures spread beyond the window reach the ceiling of four
    for _ in range(4):
        await refused(service.login(nir(204), password="faux-Mot-de-passe", client=PERSON))
        service.clock.advance(seconds=61)

    # client_throttled: one address, wrong passwords on three NIRs without an account
    for serial in (210, 211, 212):
        await refused(service.login(nir(serial), password="faux-Mot-de-passe", client=SPRAYER))
    service.clock.advance(minutes=1)

    # devices_revoked: the trusted browser of the first login is lost
    await service.advisor.RevokeTrustedDevices(
        auth_pb2.RevokeTrustedDevicesRequest(nir=nir(200), advisor_id=ADVISOR, reason=REASON)
    )

    # account_unlocked, account_reset, provisional_code_used
    await service.advisor.UnlockAccount(
        auth_pb2.UnlockAccountRequest(nir=nir(201), advisor_id=ADVISOR, reason=REASON)
    )
    await service.advisor.ResetAccount(
        auth_pb2.ResetAccountRequest(
            nir=nir(204), advisor_id=ADVISOR, reason=REASON, send_provisional_code=True
        )
    )
    sms = next(service.settings.outbox_dir.glob("*.sms.txt")).read_text(encoding="utf-8")
    provisional = re.search(r"est ([A-Z0-9]{10})\.", sms)
    assert provisional
    setup = await service.login(nir(204), password=provisional.group(1), client=PERSON)
    seen["codes"].append(provisional.group(1))
    seen["tokens"].append(setup.account_setup_required.setup_token)
    return seen


async def request_code(service: ServiceUnderTest, login_id: str) -> str:
    before = len(service.smtp.deliveries)
    await service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id, client=PERSON))
    return extract_code((await service.smtp.wait_for_messages(before + 1))[-1])


async def every_event_service(make_service: ServiceFactory) -> ServiceUnderTest:
    return await make_service(
        code_quota=2,
        failure_window=60,
        max_consecutive_failures=4,
        client_failure_limit=3,
        client_allowlist="198.51.100.0/24",  # the person's own failures never throttle her
    )


async def test_every_event_is_exported_with_its_columns(make_service: ServiceFactory) -> None:
    """Each SPEC §8 event is one row with the keys, the call, the client and no secret."""
    service = await every_event_service(make_service)
    seen = await drive_every_event(service)

    rows = await export(service.settings.database_url)

    # the reset's failures have their own tests (tests/e2e/test_reset_guarantees.py)
    failures = {AuditKind.PROVISIONAL_CODE_WITHDRAWN, AuditKind.AUTHENTICATION_VOIDED}
    assert {row["kind"] for row in rows} == {kind.value for kind in AuditKind} - failures
    for row in rows:
        assert list(row) == KEYS
        assert RFC3339_UTC.fullmatch(row["time"])
        assert re.fullmatch(r"[0-9a-f]{32,128}", row["nir_ref"])
        assert row["caller"] in {"test-portal", "advisor-1"}
        assert row["request_id"]
    assert [row["time"] for row in rows] == sorted(row["time"] for row in rows)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)
    assert [len(by_kind[kind]) for kind in ("password_failed", "code_failed")] == [3 + 4 + 3, 3]

    advisor_kinds = (
        "account_unlocked",
        "account_reset",
        "devices_revoked",
        "provisional_code_sent",
    )
    client_kinds = set(by_kind) - set(advisor_kinds)
    for kind in client_kinds:
        for row in by_kind[kind]:
            expected = SPRAYER if row["client_ip"] == SPRAYER.ip else PERSON
            assert (row["client_ip"], row["user_agent"]) == (expected.ip, expected.user_agent)
            assert row["advisor_id"] is row["reason"] is None
    (authenticated,) = by_kind["authenticated"]
    assert authenticated["detail"] == "password,email_code"
    assert authenticated["account_id"]
    assert {row["client_ip"] for row in by_kind["client_throttled"]} == {SPRAYER.ip}
    details = ("locks_cleared=1", "provisional_code_stored=True", "revoked_count=1", "sms")
    for kind, detail in zip(advisor_kinds, details, strict=True):
        (row,) = by_kind[kind]
        assert (row["advisor_id"], row["reason"], row["caller"]) == (ADVISOR, REASON, "advisor-1")
        assert row["client_ip"] is row["user_agent"] is None
        assert row["detail"] == detail

    everything = json.dumps(rows, ensure_ascii=False)
    for secret in [*secrets_of(service), *seen["codes"], *seen["tokens"], *seen["logins"]]:
        assert secret not in everything, secret


async def test_the_export_filters_by_time_and_kind(
    backend_settings: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--since (inclusive), --until (exclusive) and --kind (repeatable) select the rows."""
    url = backend_settings["database_url"]
    monkeypatch.setenv("AMELI_DATABASE_URL", url)
    start = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    await seed(url, [(kind, start + timedelta(hours=n)) for n, kind in enumerate(SEEDED)])

    async def exported(*options: str) -> list[dict[str, Any]]:
        assert await run("audit", "export", *options) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert [row["kind"] for row in await exported()] == SEEDED
    assert [row["time"] for row in await exported("--since", "2024-05-01T10:00:00Z")] == [
        "2024-05-01T10:00:00.000000Z",
        "2024-05-01T11:00:00.000000Z",
    ]
    window = ["--since", "2024-05-01T09:00+00:00", "--until", "2024-05-01T11:00:00"]
    assert [row["kind"] for row in await exported(*window)] == SEEDED[1:3]
    assert [row["kind"] for row in await exported("--until", "2024-05-01")] == []
    kinds = ["--kind", "password_failed", "--kind", "account_reset"]
    assert [row["kind"] for row in await exported(*kinds)] == [
        "password_failed",
        "password_failed",
        "account_reset",
    ]
    times = [row["time"] for row in await exported("--kind", "locked_password")]
    assert times == ["2024-05-01T09:00:00.000000Z"]


SEEDED = ["password_failed", "locked_password", "password_failed", "account_reset"]


async def seed(url: str, events: list[tuple[str, datetime]]) -> None:
    """Audit rows written through the adapter, out of time order."""
    rows = [AuditEvent(kind, "ref-" + kind, when, caller="test") for kind, when in events]
    await seed_events(url, rows[::-1])


async def seed_events(url: str, events: list[AuditEvent]) -> None:
    database = Database(url)
    try:
        audit = SqlAuditLog(database)
        for event in events:
            await audit.record(event)
    finally:
        await database.dispose()


async def test_purge_deletes_audit_rows_older_than_the_days_given(
    backend_settings: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``purge --audit-older-than 30`` deletes every older row, in batches, and says how many."""
    url = backend_settings["database_url"]
    monkeypatch.setenv("AMELI_DATABASE_URL", url)
    monkeypatch.setattr(maintenance, "AUDIT_PURGE_BATCH", 2)
    now = datetime.now(UTC)
    old = [("password_failed", now - timedelta(days=31, minutes=n)) for n in range(5)]
    await seed(url, [*old, ("authenticated", now - timedelta(days=29))])

    assert await run("purge", "--audit-older-than", "30") == 0

    assert "audit_events: 5 row(s) older than 30 day(s) deleted" in capsys.readouterr().out
    assert [row["kind"] for row in await export(url)] == ["authenticated"]
    assert await run("purge") == 0  # without the option the audit is kept
    assert "audit_events" not in capsys.readouterr().out
    assert len(await export(url)) == 1


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["audit", "export", "--kind", "login_failed"], "invalid choice: 'login_failed'"),
        (["audit", "export", "--since", "hier"], "'hier' is not an ISO 8601 time"),
        (["purge", "--audit-older-than", "0"], "'0' is not a positive whole number of days"),
        (["purge", "--audit-older-than", "-3"], "not a positive whole number of days"),
        (["purge", "--audit-older-than", "1.5"], "not a positive whole number of days"),
    ],
)
def test_bad_options_are_refused_with_status_2(
    args: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown kind, a time that is not ISO 8601 or a bad number of days: exit 2, said why."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


def test_since_after_until_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty time window is a mistake: exit 2 before the database is opened."""
    monkeypatch.setenv("AMELI_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'none.db'}")
    assert main(["audit", "export", "--since", "2024-05-02", "--until", "2024-05-01"]) == 2
    assert "--since must be before --until" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()


def test_an_export_into_a_closed_pipe_stops_quietly(tmp_path: Path) -> None:
    """``audit export | head -1`` on a large trail: one line read, no traceback, status 0."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'ameli.db'}"
    start = datetime(2024, 5, 1, tzinfo=UTC)

    async def fill() -> None:
        await upgrade(url)
        events = [
            AuditEvent("password_failed", f"{n:064x}", start + timedelta(seconds=n))
            for n in range(3000)  # far more than a pipe buffers
        ]
        await seed_events(url, events)

    asyncio.run(fill())
    process = subprocess.Popen(
        [sys.executable, "-m", "ameli_grpc.cli", "audit", "export"],
        env=environment({"database_url": url}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # `head` has its line and goes away
    err = process.stderr.read()
    process.stderr.close()

    assert process.wait(timeout=60) == 0
    assert json.loads(first)["kind"] == "password_failed"
    assert err.decode() == ""
