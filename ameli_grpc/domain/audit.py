"""What both use-case sets share: the audit trail they write to, and the input limits."""

from __future__ import annotations

from datetime import datetime

from ameli_grpc.domain.context import current_call
from ameli_grpc.domain.errors import AuthError, ErrorReason, FieldViolation
from ameli_grpc.domain.messages import Messages
from ameli_grpc.domain.model import AuditEvent
from ameli_grpc.domain.outcomes import ClientInfo, CredentialsInput
from ameli_grpc.domain.ports import AuditLog

MAX_SECRET_LENGTH = 1024  # longer passwords or codes are wrong entries, never hashed
MAX_ID_LENGTH = 256  # login ids, device tokens
MAX_ADVISOR_ID_LENGTH = 64  # SPEC §8
MAX_REASON_LENGTH = 500  # SPEC §8: the advisor's free text


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
        reason: str | None = None,
    ) -> None:
        """One audit row; the client's IP and user agent come from the gateway's request, the
        caller's name from the call under way (``domain.context``); ``reason`` is the
        advisor's free text."""
        if isinstance(client, CredentialsInput):
            client = client.client
        if client is not None and client.user_agent:
            detail = f"{detail or ''} | {client.user_agent[:200]}"
        ip = client.ip[:64] if client is not None and client.ip else None
        caller = current_call().caller
        await self._log.record(
            AuditEvent(
                kind, nir_ref, now, account_id, advisor_id, detail, ip, caller, reason=reason
            )
        )


def require_text(field: str, value: str, max_length: int | None = None) -> None:
    """A mandatory printable text field, at most ``max_length`` characters.

    INVALID_REQUEST otherwise: blank, too long, or with a NUL or any other
    control character (which a database could refuse after a side effect).
    """
    too_long = max_length is not None and len(value) > max_length
    if not value.strip() or too_long or not value.isprintable():
        raise AuthError(
            ErrorReason.INVALID_REQUEST,
            Messages.INVALID_REQUEST,
            violations=(FieldViolation(field, Messages.required_field(max_length)),),
        )
