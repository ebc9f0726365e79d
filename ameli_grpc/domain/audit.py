"""What both use-case sets share: the audit trail they write to."""

from __future__ import annotations

from datetime import datetime

from ameli_grpc.domain.context import current_call
from ameli_grpc.domain.model import AuditEvent
from ameli_grpc.domain.outcomes import ClientInfo, CredentialsInput
from ameli_grpc.domain.ports import AuditLog


class AuditTrail:
    """Writes one audit row per event; both the login and the advisor's desk use it."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    async def record(
        self,
        kind: str,
        nir_ref: str,
        now: datetime,
        account_id: str | None = None,
        advisor_id: str | None = None,
        detail: str | None = None,
        client: CredentialsInput | ClientInfo | None = None,
    ) -> None:
        """One audit row; the client's IP and user agent come from the gateway's request, the
        caller's name from the call under way (``domain.context``)."""
        if isinstance(client, CredentialsInput):
            client = client.client
        if client is not None and client.user_agent:
            detail = f"{detail or ''} | {client.user_agent[:200]}"
        ip = client.ip[:64] if client is not None and client.ip else None
        caller = current_call().caller
        await self._log.record(
            AuditEvent(kind, nir_ref, now, account_id, advisor_id, detail, ip, caller)
        )
