"""The advisor's use cases (FAQ): lock status and the account "réinitialisation"."""

from __future__ import annotations

from datetime import datetime

from ameli_grpc.domain.audit import AuditTrail
from ameli_grpc.domain.errors import AuthError, DependencyUnavailable, ErrorReason
from ameli_grpc.domain.locks import governing_lock, lock_view
from ameli_grpc.domain.masking import mask_phone
from ameli_grpc.domain.messages import Messages, whole_minutes
from ameli_grpc.domain.model import LockScope, ProvisionalCode
from ameli_grpc.domain.nir import Nir
from ameli_grpc.domain.outcomes import AccountReset, AccountUnlocked, LockStatus
from ameli_grpc.domain.policy import Policy
from ameli_grpc.domain.ports import Ports
from ameli_grpc.domain.tokens import new_provisional_code


class AdvisorUseCases:
    """What the advisor's back office calls (GetLockStatus is also open to the portals)."""

    def __init__(self, ports: Ports, policy: Policy) -> None:
        self._p = ports
        self._policy = policy
        self._audit = AuditTrail(ports.audit)

    async def get_lock_status(self, raw_nir: str) -> LockStatus:
        nir = Nir.parse(raw_nir)
        status = await self._p.store.status(
            self._p.keyring.nir_ref(nir.value),
            self._p.clock.now(),
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

    async def unlock_account(self, raw_nir: str, advisor_id: str, reason: str) -> AccountUnlocked:
        """Lift every lock, counter and the quota of a NIR; the account and its devices stay.

        Works for a NIR without an account too (its locks are kept alike).
        """
        nir = Nir.parse(raw_nir)
        nir_ref, now = self._p.keyring.nir_ref(nir.value), self._p.clock.now()
        account = await self._p.accounts.get_by_nir(nir.value)
        active = await self._p.store.active_locks(nir_ref, now, frozenset(LockScope))
        await self._p.store.reset(nir_ref)
        await self._audit.record(
            "account_unlocked",
            nir_ref,
            now,
            account.account_id if account else None,
            advisor_id,
            f"{reason} | locks_cleared={len(active)}",
        )
        return AccountUnlocked(now, len(active))

    async def reset_account(
        self, raw_nir: str, advisor_id: str, reason: str, send_provisional_code: bool
    ) -> AccountReset:
        """The advisor's "réinitialisation": delete the account, its devices, locks, counters."""
        nir = Nir.parse(raw_nir)
        account = await self._p.accounts.get_by_nir(nir.value)
        if account is None:
            raise AuthError(ErrorReason.ACCOUNT_NOT_FOUND, Messages.ACCOUNT_NOT_FOUND)
        nir_ref, now = self._p.keyring.nir_ref(nir.value), self._p.clock.now()
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
                "account_reset",
                nir_ref,
                now,
                account.account_id,
                advisor_id,
                f"{reason} | provisional_code_sent={sent}",
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
