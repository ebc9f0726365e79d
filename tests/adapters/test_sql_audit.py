"""The audit trail's SQL reading and purging (``audit export``, ``purge --audit-older-than``)."""

from __future__ import annotations

from contextlib import aclosing
from datetime import UTC, datetime, timedelta

import pytest

from ameli_grpc.adapters.sql import audit_export, maintenance
from ameli_grpc.adapters.sql.audit_export import read_audit_events
from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.maintenance import purge_audit
from ameli_grpc.adapters.sql.repositories import SqlAuditLog
from ameli_grpc.domain.model import AuditEvent
from tests.support.databases import clear_tables

START = datetime(2024, 3, 10, 14, 30, 15, 123456, tzinfo=UTC)


def event(kind: str, minutes: float, **fields: str) -> AuditEvent:
    return AuditEvent(kind, f"ref-{kind}", START + timedelta(minutes=minutes), **fields)


async def read(database: Database, **filters: object) -> list[AuditEvent]:
    return [row async for row in read_audit_events(database, **filters)]  # type: ignore[arg-type]


async def test_rows_read_back_whole_and_in_time_order(
    database: Database, audit: SqlAuditLog
) -> None:
    """Every column comes back as written; rows by time, then in the order they were written."""
    full = event(
        "account_unlocked",
        2,
        account_id="a" * 32,
        advisor_id="conseiller-3646",
        reason="appel de l'assuré",
        detail="locks_cleared=1",
        client_ip="2001:db8::1",
        caller="advisor-1",
        user_agent="Mozilla/5.0",
        request_id="req-1",
    )
    same_time = [event("password_failed", 1), event("locked_password", 1)]
    for written in (full, *same_time, event("authenticated", 0)):
        await audit.record(written)

    assert await read(database) == [event("authenticated", 0), *same_time, full]


async def test_filters_select_by_time_window_and_kinds(
    database: Database, audit: SqlAuditLog
) -> None:
    """``since`` is inclusive, ``until`` exclusive; ``kinds`` keeps only those kinds."""
    for minutes, kind in enumerate(["authenticated", "password_failed", "code_failed"]):
        await audit.record(event(kind, minutes))

    window = await read(
        database, since=START + timedelta(minutes=1), until=START + timedelta(minutes=2)
    )
    assert [row.kind for row in window] == ["password_failed"]
    kinds = await read(database, kinds={"code_failed", "authenticated"})
    assert [row.kind for row in kinds] == ["authenticated", "code_failed"]


async def test_an_export_in_batches_reads_every_row_once_in_order(
    database: Database, audit: SqlAuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch starts after the last row of the one before, by time then by insertion:
    rows sharing a time across a batch's edge are neither lost nor read twice, and the
    filters hold in every batch."""
    monkeypatch.setattr(audit_export, "BATCH_ROWS", 4)
    written = [event(kind, minutes) for minutes in (0, 1, 2) for kind in KINDS]
    for row in written:
        await audit.record(row)

    assert await read(database) == written  # 21 rows, batches of 4
    chosen = {"password_failed", "code_failed"}
    assert await read(database, kinds=chosen, since=START + timedelta(minutes=1)) == [
        row for row in written if row.kind in chosen and row.occurred_time > START
    ]


KINDS = (
    "authenticated",
    "password_failed",
    "locked_password",
    "code_sent",
    "code_failed",
    "account_unlocked",
    "devices_revoked",
)


async def test_an_export_stopped_early_gives_its_connection_back(database_url: str) -> None:
    """A reader that goes away (a closed pipe) leaves no connection behind: the pool serves on."""
    database = Database(database_url, pool_size=1, max_overflow=0, timeout=2.0)
    try:
        await clear_tables(database)
        audit = SqlAuditLog(database)
        for minutes in range(5):
            await audit.record(event("password_failed", minutes))
        for _ in range(3):
            async with aclosing(read_audit_events(database)) as rows:
                async for _row in rows:
                    break
        assert len(await read(database)) == 5
    finally:
        await database.dispose()


async def test_purge_deletes_only_rows_before_the_limit_in_batches(
    database: Database, audit: SqlAuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows strictly before the limit go, batch after batch; the one at the limit stays."""
    monkeypatch.setattr(maintenance, "AUDIT_PURGE_BATCH", 2)
    for minutes in range(6):
        await audit.record(event("password_failed", minutes))

    assert await purge_audit(database, START + timedelta(minutes=4)) == 4

    assert [row.occurred_time for row in await read(database)] == [
        START + timedelta(minutes=4),
        START + timedelta(minutes=5),
    ]
    assert await purge_audit(database, START) == 0
