"""Reading the audit trail back (``ameli-grpc audit export``): oldest first, streamed.

The rows come through a server-side cursor a batch at a time, so an export
of millions of rows holds one batch in memory, never the table.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection
from datetime import datetime

from sqlalchemy import select

from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.schema import audit_events
from ameli_grpc.domain.model import AuditEvent

BATCH_ROWS = 500


async def read_audit_events(
    database: Database,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    kinds: Collection[str] = (),
) -> AsyncGenerator[AuditEvent, None]:
    """The rows at or after ``since`` and before ``until``, of ``kinds`` (all when empty),
    ordered by time (then by insertion)."""
    table = audit_events
    statement = select(table).order_by(table.c.occurred_time, table.c.id)
    if since is not None:
        statement = statement.where(table.c.occurred_time >= since)
    if until is not None:
        statement = statement.where(table.c.occurred_time < until)
    if kinds:
        statement = statement.where(table.c.kind.in_(sorted(kinds)))
    async with database.connection() as connection:
        rows = await connection.stream(statement.execution_options(yield_per=BATCH_ROWS))
        async for row in rows:
            yield AuditEvent(
                kind=row.kind,
                nir_ref=row.nir_ref,
                occurred_time=row.occurred_time,
                account_id=row.account_id,
                advisor_id=row.advisor_id,
                detail=row.detail,
                client_ip=row.client_ip,
                caller=row.caller,
                reason=row.reason,
                user_agent=row.user_agent,
                request_id=row.request_id,
            )
