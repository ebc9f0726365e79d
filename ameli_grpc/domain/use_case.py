"""What every use case shares: its ports, its policy, the audit trail, the input limits."""

from __future__ import annotations

from datetime import datetime

from ameli_grpc.domain.errors import AuthError, ErrorReason, FieldViolation
from ameli_grpc.domain.messages import Messages
from ameli_grpc.domain.model import AuditEvent
from ameli_grpc.domain.policy import Policy
from ameli_grpc.domain.ports import Ports

MAX_SECRET_LENGTH = 1024  # longer passwords or codes are wrong entries, never hashed
MAX_ID_LENGTH = 256  # login ids, device tokens, advisor ids
MAX_REASON_LENGTH = 2000


class UseCases:
    def __init__(self, ports: Ports, policy: Policy) -> None:
        self._p = ports
        self._policy = policy

    async def _audit(
        self,
        kind: str,
        nir_ref: str,
        now: datetime,
        account_id: str | None = None,
        actor: str | None = None,
        detail: str | None = None,
        client_ip: str | None = None,
    ) -> None:
        await self._p.audit.record(
            AuditEvent(
                kind, nir_ref, now, account_id, actor, detail, (client_ip or "")[:64] or None
            )
        )


def require_text(field: str, value: str, max_length: int) -> None:
    if not value.strip() or len(value) > max_length:
        raise AuthError(
            ErrorReason.INVALID_REQUEST,
            Messages.INVALID_REQUEST,
            violations=(FieldViolation(field, f"obligatoire, {max_length} caractères au plus"),),
        )
