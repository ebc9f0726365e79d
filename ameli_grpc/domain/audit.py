"""What both use-case sets share: the audit trail they write to."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from ameli_grpc.domain.context import current_call
from ameli_grpc.domain.model import AuditEvent
from ameli_grpc.domain.outcomes import ClientInfo, CredentialsInput
from ameli_grpc.domain.ports import AuditLog


class AuditKind(StrEnum):
    """The events of the audit trail (SPEC §8), each one row when it happens."""

    AUTHENTICATED = "authenticated"  # detail: the methods
    PASSWORD_FAILED = "password_failed"
    CODE_FAILED = "code_failed"
    LOCKED_PASSWORD = "locked_password"
    LOCKED_CODE = "locked_code"
    LOCKED_QUOTA = "locked_quota"
    SUSPENDED = "suspended"
    CLIENT_THROTTLED = "client_throttled"
    DEVICE_TRUSTED = "device_trusted"
    PROVISIONAL_CODE_USED = "provisional_code_used"
    ACCOUNT_RESET = "account_reset"
    ACCOUNT_UNLOCKED = "account_unlocked"
    DEVICES_REVOKED = "devices_revoked"
    # beyond SPEC §8's list: what the reset's SMS became, and a success voided by a reset
    PROVISIONAL_CODE_SENT = "provisional_code_sent"
    PROVISIONAL_CODE_WITHDRAWN = "provisional_code_withdrawn"
    AUTHENTICATION_VOIDED = "authentication_voided"


MAX_AUDIT_IP_LENGTH = 64  # the columns' sizes
MAX_AUDIT_USER_AGENT_LENGTH = 512


class AuditTrail:
    """Writes one audit row per event; both the login and the advisor's desk use it.

    Each row gets, besides what the use case passes, the caller's name and the
    request id of the call under way (``domain.context``). Never a NIR, email,
    password, code or token: the NIR is ``nir_ref``, its keyed hash.
    """

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
        *,
        reason: str | None = None,
    ) -> None:
        """One audit row, one insert (the arguments as for ``event``)."""
        row = self.event(kind, nir_ref, now, account_id, advisor_id, detail, client, reason=reason)
        await self._log.record(row)

    def event(
        self,
        kind: str,
        nir_ref: str,
        now: datetime,
        account_id: str | None = None,
        advisor_id: str | None = None,
        detail: str | None = None,
        client: CredentialsInput | ClientInfo | None = None,
        *,
        reason: str | None = None,
    ) -> AuditEvent:
        """The row, not written: ``record`` writes it, or a repository in the same
        transaction as the change it records (``AccountRepository.reset``).

        ``client`` is the person's address and user agent as the gateway sent
        them (already checked at the edge); ``reason`` the advisor's free text;
        ``detail`` what else the event needs (no secret).
        """
        if isinstance(client, CredentialsInput):
            client = client.client
        ip = client.ip[:MAX_AUDIT_IP_LENGTH] if client is not None and client.ip else None
        agent = client.user_agent if client is not None and client.user_agent else None
        call = current_call()
        return AuditEvent(
            kind=kind,
            nir_ref=nir_ref,
            occurred_time=now,
            account_id=account_id,
            advisor_id=advisor_id,
            detail=detail,
            client_ip=ip,
            caller=call.caller,
            reason=reason,
            user_agent=agent[:MAX_AUDIT_USER_AGENT_LENGTH] if agent else None,
            request_id=call.request_id,
        )
