"""The advisor's use cases (FAQ, SPEC §8): lock status, the account as the advisor sees it,
unlock, trusted devices' revocation and the account "réinitialisation"."""

from __future__ import annotations

from datetime import datetime

from ameli_grpc.domain.audit import AuditKind, AuditTrail
from ameli_grpc.domain.errors import AuthError, DependencyUnavailable, ErrorReason
from ameli_grpc.domain.locks import governing_lock, lock_view
from ameli_grpc.domain.masking import mask_email, mask_phone
from ameli_grpc.domain.messages import Messages, whole_minutes
from ameli_grpc.domain.model import LockScope, ProvisionalCode
from ameli_grpc.domain.nir import Nir
from ameli_grpc.domain.outcomes import (
    AccountDetails,
    AccountReset,
    AccountUnlocked,
    DevicesRevoked,
    LockStatus,
    TrustedDeviceView,
)
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
        revoked = await self._p.devices.delete_for_account(account.account_id, now)
        await self._audit.record(
            AuditKind.DEVICES_REVOKED,
            nir_ref,
            now,
            account.account_id,
            advisor_id,
            f"revoked_count={revoked}",
            reason=reason,
        )
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
        """The advisor's "réinitialisation": delete the account, its devices, locks, counters."""
        nir = Nir.parse(raw_nir)
        account = await self._p.accounts.get_by_nir(nir.value)
        if account is None:
            raise _account_not_found()
        now = self._p.clock.now()
        nir_ref = await self._rotation.nir_ref(nir.value, now)
        phone = account.mobile_phone if send_provisional_code else None
        provisional = await self._store_provisional_code(nir, now) if phone else None
        await self._p.store.reset(nir_ref)  # idempotent: first, so that a retry can finish
        await self._p.accounts.delete(account.account_id)
        sent = False
        try:  # the account is gone: whatever happens next, the reset is audited
            if provisional and phone:
                sent = await self._send_provisional_code(phone, *provisional)
        finally:
            await self._audit.record(
                AuditKind.ACCOUNT_RESET,
                nir_ref,
                now,
                account.account_id,
                advisor_id,
                f"provisional_code_sent={sent}",
                reason=reason,
            )
        if not (sent and provisional and phone):
            return AccountReset(now, provisional_code_sent=False)
        return AccountReset(now, True, mask_phone(phone), provisional[0].expire_time)

    async def _store_provisional_code(self, nir: Nir, now: datetime) -> tuple[ProvisionalCode, str]:
        """Stored before the account is deleted, so that a failure here deletes nothing."""
        code = new_provisional_code()
        ttl = self._policy.provisional_code_ttl
        provisional = ProvisionalCode(nir.value, await self._p.hasher.hash(code), now + ttl)
        await self._p.provisional_codes.put(provisional)
        return provisional, code

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


def _account_not_found() -> AuthError:
    return AuthError(ErrorReason.ACCOUNT_NOT_FOUND, Messages.ACCOUNT_NOT_FOUND)
