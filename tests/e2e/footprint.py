"""What a call may leave behind, read from outside: to show that a refused call left nothing.

Rows of every table, the NIR's lock status (failures, codes sent, locks), the
emails the SMTP server received and the SMS files of the outbox. Also which
test key may make a call (``key_for``), for tests that go over every RPC.
"""

from __future__ import annotations

from dataclasses import dataclass

from ameli.auth.v1 import auth_pb2
from sqlalchemy import func, select

from ameli_grpc.adapters.sql.schema import metadata
from ameli_grpc.server.callers import ALLOWED_METHODS, Role
from tests.e2e.harness import ADVISOR_KEY, PORTAL_KEY, ServiceUnderTest
from tests.support.databases import rows

SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]


def key_for(method: str) -> str | None:
    """The key of a role that may call ``method`` (None while no role may)."""
    for role, key in ((Role.PORTAL, PORTAL_KEY), (Role.ADVISOR, ADVISOR_KEY)):
        if method in ALLOWED_METHODS[role]:
            return key
    return None


@dataclass(frozen=True)
class Footprint:
    rows: tuple[tuple[str, int], ...]  # (table, row count) of every table
    lock_status: tuple[bool, int, int, int]  # locked, password and code failures, codes sent
    emails: int
    sms: int

    def rows_of(self, table: str) -> int:
        return dict(self.rows)[table]


async def footprint(service: ServiceUnderTest, nir: str) -> Footprint:
    assert service.container is not None
    counts: list[tuple[str, int]] = []
    for table in metadata.sorted_tables:
        (count,) = await rows(service.container.database, select(func.count()).select_from(table))
        counts.append((table.name, int(count[0])))
    status = await service.advisor.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir))
    outbox = service.settings.outbox_dir
    return Footprint(
        rows=tuple(counts),
        lock_status=(
            status.locked,
            status.password_failures,
            status.code_failures,
            status.codes_sent_in_window,
        ),
        emails=len(service.smtp.deliveries),
        sms=len(list(outbox.glob("*.sms.txt"))) if outbox.exists() else 0,
    )
