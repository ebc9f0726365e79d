"""Reading the audit trail back (``ameli-grpc audit export``): oldest first, streamed.

The rows come a batch at a time, each batch a statement of its own that starts
after the last row of the one before (by time, then by insertion): an export
of millions of rows holds one batch in memory, never the table, and holds no
cursor open between batches.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, and_, or_, select
from sqlalchemy.engine import Connection

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
    statement = select(table).order_by(table.c.occurred_time, table.c.id).limit(BATCH_ROWS)
    if since is not None:
        statement = statement.where(table.c.occurred_time >= since)
    if until is not None:
        statement = statement.where(table.c.occurred_time < until)
    if kinds:
        statement = statement.where(table.c.kind.in_(sorted(kinds)))
    batch = statement
    while True:
        rows = await database.statement(_all_rows(batch))
        for row in rows:
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
        if len(rows) < BATCH_ROWS:
            return
        last = rows[-1]
        time, row_id = table.c.occurred_time, table.c.id
        batch = statement.where(
            or_(time > last.occurred_time, and_(time == last.occurred_time, row_id > last.id))
        )


def _all_rows(statement: Select[Any]) -> Callable[[Connection], Sequence[Row[Any]]]:
    return lambda connection: connection.execute(statement).all()
