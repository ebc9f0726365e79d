"""Housekeeping of the SQL tables: rows whose validity has ended are of no use to anyone."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete

from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.schema import account_setups, provisional_codes, trusted_devices

EXPIRING_TABLES = (trusted_devices, provisional_codes, account_setups)


async def purge_expired(database: Database, now: datetime) -> dict[str, int]:
    """Delete the expired trusted devices, provisional codes and account setups.

    The rules already ignore them; this only keeps the tables small and holds
    no data longer than it serves. Returns the number of rows deleted per table.
    """
    deleted: dict[str, int] = {}
    async with database.session() as session:
        for table in EXPIRING_TABLES:
            result = await session.execute(delete(table).where(table.c.expire_time <= now))
            deleted[table.name] = int(getattr(result, "rowcount", 0) or 0)
    return deleted
