"""Housekeeping of the SQL tables: rows whose validity has ended are of no use to anyone,
and audit rows are kept only as long as the operator decides."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.repositories import deleted_rows
from ameli_grpc.adapters.sql.schema import (
    account_setups,
    audit_events,
    provisional_codes,
    trusted_devices,
)

EXPIRING_TABLES = (trusted_devices, provisional_codes, account_setups)
AUDIT_PURGE_BATCH = 5000  # rows per transaction: each statement stays short on a large table


async def purge_expired(database: Database, now: datetime) -> dict[str, int]:
    """Delete the expired trusted devices, provisional codes and account setups.

    The rules already ignore them; this only keeps the tables small and holds
    no data longer than it serves. Returns the number of rows deleted per table.
    """

    def purge(connection: Connection) -> dict[str, int]:
        return {
            table.name: deleted_rows(connection, delete(table).where(table.c.expire_time <= now))
            for table in EXPIRING_TABLES
        }

    return await database.transaction(purge)


async def purge_audit(database: Database, before: datetime) -> int:
    """Delete the audit rows that occurred before ``before``; how many were deleted.

    In batches, each its own transaction, so that no statement runs into the
    database's statement timeout and the audit keeps taking new rows meanwhile.
    """
    old = (
        select(audit_events.c.id)
        .where(audit_events.c.occurred_time < before)
        .limit(AUDIT_PURGE_BATCH)
        .scalar_subquery()
    )
    statement = delete(audit_events).where(audit_events.c.id.in_(old))
    total = 0
    while True:
        deleted = await database.transaction(lambda connection: deleted_rows(connection, statement))
        total += deleted
        if deleted < AUDIT_PURGE_BATCH:
            return total
