"""The advisor's use cases (FAQ, SPEC §8): lock status, the account as the advisor sees it,
unlock, trusted devices' revocation and the account "réinitialisation"."""

from __future__ import annotations

import asyncio
from datetime import datetime

from ameli_grpc.domain.audit import AuditKind, AuditTrail
from ameli_grpc.domain.errors import AuthError, DependencyUnavailable, ErrorReason
from ameli_grpc.domain.locks import governing_lock, lock_view
from ameli_grpc.domain.masking import mask_email, mask_phone
from ameli_grpc.domain.messages import Messages, whole_minutes
from ameli_grpc.domain.model import Account, AuditEvent, LockScope, ProvisionalCode
from ameli_grpc.domain.nir import Nir
from ameli_grpc.domain.outcomes import (
    AccountDetails,
    AccountReset,
    AccountUnlocked,
    DevicesRevoked,
    LockStatus,
    TrustedDeviceView,
)
from ameli_grpc.domain.phone import InvalidPhoneNumber, PhoneNumber
from ameli_grpc.domain.policy import Policy
from ameli_grpc.domain.ports import Ports
from ameli_grpc.domain.rotation import KeyRotation
from ameli_grpc.domain.tokens import new_provisional_code


class AdvisorUseCases:
    """What the advisor's back office calls (GetLockStatus is also open to the portals)."""

    def __init__(self, ports: Ports, policy: Policy) -> None:
        self._p = ports
        self._policy = policy
        self._audit = AuditTrail(ports.audit)
        self._rotation = KeyRotation(ports.keyring, ports.store, ports.devices)

    async def get_lock_status(self, raw_nir: str) -> LockStatus:
        nir = Nir.parse(raw_nir)
        return await self._lock_status(nir, self._p.clock.now())

    async def get_account(self, raw_nir: str) -> AccountDetails:
        """What the advisor sees of the account of a NIR: masked contacts, whether the email
        is validated, the RFI's answer, the devices still trusted, the locks and counters."""
        nir = Nir.parse(raw_nir)
        account = await self._p.accounts.get_by_nir(nir.value)
        if account is None:
            raise _account_not_found()
        now = self._p.clock.now()
        devices = await self._p.devices.list_for_account(account.account_id, now)
        lock_status = await self._lock_status(nir, now)
        # An RFI outage is the advisor's UNAVAILABLE: no guess stands in for its answer.
        affiliation = await self._p.registry.affiliation(nir.value)
        email, phone = (account.email or "").strip(), (account.mobile_phone or "").strip()
        return AccountDetails(
            masked_email=mask_email(email) if email else "",
            email_validated=account.email_validated,
            masked_phone=mask_phone(phone) if phone else "",
            affiliation=affiliation,
            trusted_devices=tuple(
                TrustedDeviceView(device.created_time, device.expire_time, device.last_use_time)
                for device in devices
                if device.expire_time > now  # an expired device is trusted no more
            ),
            lock_status=lock_status,
        )

    async def _lock_status(self, nir: Nir, now: datetime) -> LockStatus:
        """The NIR's locks (the one that governs first, SPEC §7.2 scopes kept) and counters."""
        status = await self._p.store.status(
            await self._rotation.nir_ref(nir.value, now),
            now,
            self._policy.failure_window,
            self._policy.code_quota_window,
        )
        first = governing_lock(status.locks)
        ordered = sorted(status.locks, key=lambda lock: lock is not first)
        return LockStatus(
            locks=tuple(lock_view(lock) for lock in ordered),
            password_failures=status.password_failures,
            code_failures=status.code_failures,
            codes_sent_in_window=status.codes_sent_in_window,
        )

    async def revoke_trusted_devices(
        self, raw_nir: str, advisor_id: str, reason: str
    ) -> DevicesRevoked:
        """Un-trust every device of the account (a lost or shared computer); the account stays.

        Its next login from any of them needs the security code again.
        ``revoked_count`` counts the devices that were still trusted; expired
        rows are deleted too but were trusted no more.
        """
        nir = Nir.parse(raw_nir)
        account = await self._p.accounts.get_by_nir(nir.value)
        if account is None:
            raise _account_not_found()
        nir_ref, now = self._p.keyring.nir_ref(nir.value), self._p.clock.now()

        def audit_row(revoked: int) -> AuditEvent:  # written in the deletion's transaction
            return self._audit.event(
                AuditKind.DEVICES_REVOKED,
                nir_ref,
                now,
                account.account_id,
                advisor_id,
                f"revoked_count={revoked}",
                reason=reason,
            )

        revoked = await self._p.devices.delete_for_account(account.account_id, now, audit_row)
        return DevicesRevoked(now, revoked)

    async def unlock_account(self, raw_nir: str, advisor_id: str, reason: str) -> AccountUnlocked:
        """Lift every lock, counter and the quota of a NIR; the account and its devices stay.

        Works for a NIR without an account too (its locks are kept alike).
        """
        nir = Nir.parse(raw_nir)
        now = self._p.clock.now()
        nir_ref = await self._rotation.nir_ref(nir.value, now)
        account = await self._p.accounts.get_by_nir(nir.value)
        active = await self._p.store.active_locks(nir_ref, now, frozenset(LockScope))
        await self._p.store.reset(nir_ref)
        await self._audit.record(
            AuditKind.ACCOUNT_UNLOCKED,
            nir_ref,
            now,
            account.account_id if account else None,
            advisor_id,
            f"locks_cleared={len(active)}",
            reason=reason,
        )
        return AccountUnlocked(now, len(active))

    async def reset_account(
        self, raw_nir: str, advisor_id: str, reason: str, send_provisional_code: bool
    ) -> AccountReset:
        """The advisor's "réinitialisation": delete the account, its devices, locks, counters.

        The account, its devices, the provisional code and the ``account_reset``
        row are one SQL transaction; the NIR's logins, pending or in flight, are
        ended before this returns; the SMS goes out only after the commit.
        """
        nir = Nir.parse(raw_nir)
        account = await self._p.accounts.get_by_nir(nir.value)
        if account is None:
            raise _account_not_found()
        now = self._p.clock.now()
        nir_ref = await self._rotation.nir_ref(nir.value, now)
        phone = _sms_recipient(account) if send_provisional_code else None
        provisional = await self._new_provisional_code(nir, now) if phone else None
        event = self._audit.event(
            AuditKind.ACCOUNT_RESET,
            nir_ref,
            now,
            account.account_id,
            advisor_id,
            f"provisional_code_stored={provisional is not None}",
            reason=reason,
        )
        # Shielded: once under way, a caller that gives up (deadline, cancel) does not stop
        # the reset half-way: the commit, the ended logins and the SMS all happen.
        return await asyncio.shield(self._reset(account, nir_ref, event, provisional))

    async def _reset(
        self,
        account: Account,
        nir_ref: str,
        event: AuditEvent,
        provisional: tuple[ProvisionalCode, str] | None,
    ) -> AccountReset:
        # First end the logins: a store outage stops the reset before anything is deleted.
        await self._end_logins(account, nir_ref)
        code = provisional[0] if provisional else None
        if not await self._p.accounts.reset(account.account_id, code, event):
            raise _account_not_found()  # another advisor's reset came first
        # Again after the commit: a CheckCredentials that read the account before it now
        # finds the generation changed and gets no login (SPEC §8).
        await self._end_logins(account, nir_ref)
        await self._p.store.reset(nir_ref)
        now = event.occurred_time
        phone = _sms_recipient(account)
        if provisional is None or phone is None:
            return AccountReset(now, provisional_code_sent=False)
        sent = await self._send_provisional_code(phone, *provisional)
        await self._audit.record(
            AuditKind.PROVISIONAL_CODE_SENT if sent else AuditKind.PROVISIONAL_CODE_WITHDRAWN,
            nir_ref,
            self._p.clock.now(),
            account.account_id,
            event.advisor_id,
            "sms" if sent else "sms_failed",
            reason=event.reason,
        )
        if not sent:
            return AccountReset(now, provisional_code_sent=False)
        return AccountReset(now, True, mask_phone(phone), provisional[0].expire_time)

    async def _end_logins(self, account: Account, nir_ref: str) -> None:
        """The NIR's logins, those begun under a previous secret key too (a rotation under
        way: they keep the ref they were created under)."""
        for ref in (nir_ref, *self._p.keyring.previous_nir_refs(account.nir)):
            await self._p.store.end_logins(ref, self._policy.login_ttl)

    async def _new_provisional_code(self, nir: Nir, now: datetime) -> tuple[ProvisionalCode, str]:
        """A new code and its hash; stored by the reset's transaction, not here."""
        code = new_provisional_code()
        ttl = self._policy.provisional_code_ttl
        return ProvisionalCode(nir.value, await self._p.hasher.hash(code), now + ttl), code

    async def _send_provisional_code(
        self, phone: str, provisional: ProvisionalCode, code: str
    ) -> bool:
        """Send the SMS; if it fails the code is withdrawn (the reset itself stands)."""
        minutes = whole_minutes(self._policy.provisional_code_ttl)
        try:
            await self._p.sms.send_provisional_code(phone, code, minutes)
        except DependencyUnavailable:  # the port's only failure; a bug must not read as "not sent"
            await self._p.provisional_codes.consume(provisional.nir, provisional.code_hash)
            return False
        return True


def _sms_recipient(account: Account) -> str | None:
    """The account's phone if it can receive the SMS: a number on file from before the
    import checked them (a landline, garbage) gets no provisional code, as no phone."""
    if not account.mobile_phone:
        return None
    try:
        return account.mobile_phone if PhoneNumber.parse(account.mobile_phone).mobile else None
    except InvalidPhoneNumber:
        return None


def _account_not_found() -> AuthError:
    return AuthError(ErrorReason.ACCOUNT_NOT_FOUND, Messages.ACCOUNT_NOT_FOUND)
