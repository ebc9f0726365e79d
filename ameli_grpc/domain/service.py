"""The five use cases of the login, in the order of SPEC §2. Every rule has its line here.

``AuthService`` only talks to ports; ``ameli_grpc.bootstrap`` plugs adapters in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ameli_grpc.domain.clock import Clock, add_calendar_months
from ameli_grpc.domain.errors import AuthError, ErrorReason, FieldViolation
from ameli_grpc.domain.locks import governing_lock, lock_error, lock_view, raise_if_locked
from ameli_grpc.domain.masking import mask_email, mask_phone
from ameli_grpc.domain.messages import Messages
from ameli_grpc.domain.model import (
    Account,
    Affiliation,
    AttemptClaim,
    AttemptKind,
    AuditEvent,
    AuthMethod,
    Channel,
    Login,
    ProvisionalCode,
    TrustedDevice,
)
from ameli_grpc.domain.nir import Nir
from ameli_grpc.domain.outcomes import (
    AccountReset,
    AccountSetupRequired,
    Authenticated,
    CodeRequired,
    CodeSent,
    CodeVerified,
    CredentialsInput,
    CredentialsOutcome,
    LockStatus,
)
from ameli_grpc.domain.policy import Policy
from ameli_grpc.domain.ports import (
    AccountRepository,
    AuditLog,
    ChallengeStore,
    IdentityRegistry,
    Mailer,
    PasswordHasher,
    ProvisionalCodeRepository,
    SmsSender,
    TrustedDeviceRepository,
)
from ameli_grpc.domain.tokens import (
    Keyring,
    constant_time_equal,
    new_provisional_code,
    new_security_code,
    new_token,
)

MAX_SECRET_LENGTH = 1024  # longer passwords or codes are wrong entries, never hashed
MAX_ID_LENGTH = 256  # login ids, device tokens, advisor ids
MAX_REASON_LENGTH = 2000

_AFFILIATION_REFUSALS = {
    Affiliation.NOT_COVERED: AuthError(ErrorReason.NOT_COVERED, Messages.NOT_COVERED),
    Affiliation.PENDING: AuthError(ErrorReason.AFFILIATION_PENDING, Messages.AFFILIATION_PENDING),
}


@dataclass(frozen=True)
class Ports:
    accounts: AccountRepository
    devices: TrustedDeviceRepository
    provisional_codes: ProvisionalCodeRepository
    audit: AuditLog
    registry: IdentityRegistry
    store: ChallengeStore
    mailer: Mailer
    sms: SmsSender
    hasher: PasswordHasher
    keyring: Keyring
    clock: Clock


class AuthService:
    def __init__(self, ports: Ports, policy: Policy) -> None:
        self._p = ports
        self._policy = policy

    # --- CheckCredentials -------------------------------------------------------------

    async def check_credentials(self, request: CredentialsInput) -> CredentialsOutcome:
        """SPEC §2 "CheckCredentials, in this order", steps 1 to 8."""
        nir = Nir.parse(request.nir)  # 1
        _require_text("password", request.password, MAX_SECRET_LENGTH * 1024)
        nir_ref, now = self._p.keyring.nir_ref(nir.value), self._p.clock.now()
        raise_if_locked(await self._p.store.active_locks(nir_ref, now), self._quota)  # 2
        proof, ticket = await self._verify_password(nir, nir_ref, request.password, now)  # 3
        if isinstance(proof, ProvisionalCode):  # 4
            return await self._start_account_setup(proof, nir_ref, ticket, request, now)
        account = proof
        affiliation = await self._p.registry.affiliation(nir.value)  # 5
        if affiliation in _AFFILIATION_REFUSALS:
            raise _AFFILIATION_REFUSALS[affiliation]
        methods = await self._methods_without_code(account, request, now)  # 6
        if methods:
            await self._p.store.settle_success(
                nir_ref, AttemptKind.PASSWORD, ticket, login_complete=True
            )
            return await self._authenticated(account, nir_ref, methods, now, request.client_ip)
        if not account.email or not account.email_validated:  # 7
            raise AuthError(ErrorReason.EMAIL_NOT_VALIDATED, Messages.EMAIL_NOT_VALIDATED)
        return await self._create_login(account, nir_ref, now)  # 8

    async def _verify_password(
        self, nir: Nir, nir_ref: str, password: str, now: datetime
    ) -> tuple[Account | ProvisionalCode, str]:
        """Step 3: the password of the account, or a provisional code, counted in advance.

        An unknown NIR costs the same argon2 verify and counts the same
        failure as a wrong password, so nobody can tell which NIRs exist. The
        reads happen before the claim so that a database outage counts nothing.
        """
        account = await self._p.accounts.get_by_nir(nir.value)
        provisional = await self._p.provisional_codes.get(nir.value)
        if provisional is not None and provisional.expire_time <= now:
            provisional = None
        claim = await self._claim(nir_ref, AttemptKind.PASSWORD, now)
        assert claim.ticket is not None
        proof: Account | ProvisionalCode | None = account or provisional
        secret_hash = account.password_hash if account else (provisional and provisional.code_hash)
        if secret_hash and len(password) <= MAX_SECRET_LENGTH:
            right = await self._p.hasher.verify(secret_hash, password)
        else:
            await self._p.hasher.verify_dummy(password[:MAX_SECRET_LENGTH])
            right = False
        if not right or proof is None:
            raise await self._wrong_entry(claim, nir_ref, ErrorReason.INVALID_CREDENTIALS, now)
        await self._p.store.settle_success(
            nir_ref, AttemptKind.PASSWORD, claim.ticket, login_complete=False
        )
        if account is not None and self._p.hasher.needs_rehash(account.password_hash):
            new_hash = await self._p.hasher.hash(password)
            await self._p.accounts.update_password_hash(account.account_id, new_hash)
        return proof, claim.ticket

    async def _start_account_setup(
        self,
        provisional: ProvisionalCode,
        nir_ref: str,
        ticket: str,
        request: CredentialsInput,
        now: datetime,
    ) -> AccountSetupRequired:
        """Step 4: a provisional code (single use) leads to account creation, no code step."""
        if not await self._p.provisional_codes.consume(provisional.nir, provisional.code_hash):
            raise AuthError(
                ErrorReason.INVALID_CREDENTIALS,
                Messages.wrong_entry(self._policy.max_password_failures),
            )
        await self._p.store.settle_success(
            nir_ref, AttemptKind.PASSWORD, ticket, login_complete=True
        )
        await self._audit("provisional_code_used", nir_ref, now, client_ip=request.client_ip)
        return AccountSetupRequired(setup_token=new_token())

    async def _methods_without_code(
        self, account: Account, request: CredentialsInput, now: datetime
    ) -> tuple[AuthMethod, ...]:
        """Step 6: the channels and devices that need no security code (empty: a code is due)."""
        if request.channel is Channel.MOBILE_APP:
            return (AuthMethod.PASSWORD,)
        if request.channel is Channel.FRANCECONNECT:
            return () if self._policy.franceconnect_requires_code else (AuthMethod.PASSWORD,)
        if await self._device_is_trusted(account, request.device_token, now):
            return (AuthMethod.PASSWORD, AuthMethod.TRUSTED_DEVICE)
        return ()

    async def _device_is_trusted(self, account: Account, token: str, now: datetime) -> bool:
        if not token or len(token) > MAX_ID_LENGTH:
            return False
        device = await self._p.devices.find(self._p.keyring.token_hash(token))
        return (
            device is not None
            and device.account_id == account.account_id
            and device.expire_time > now
        )

    async def _create_login(self, account: Account, nir_ref: str, now: datetime) -> CodeRequired:
        """Step 8: a login waiting for its security code (the email is on file and validated)."""
        assert account.email is not None
        login = Login(
            login_id="",
            nir_ref=nir_ref,
            account_id=account.account_id,
            masked_email=mask_email(account.email),
            expire_time=now + self._policy.login_ttl,
        )
        ttl = int(self._policy.login_ttl.total_seconds())
        login_id = await self._p.store.create_login(login, ttl)
        return CodeRequired(login_id, login.masked_email, login.expire_time)

    # --- RequestCode / VerifyCode -----------------------------------------------------

    async def request_code(self, login_id: str) -> CodeSent:
        """Count the request in the quota, send a new code, invalidate the previous one.

        A send that fails neither counts nor leaves a usable code.
        """
        now = self._p.clock.now()
        login, account = await self._open_login(login_id, now)
        if not account.email or not account.email_validated:
            raise AuthError(ErrorReason.EMAIL_NOT_VALIDATED, Messages.EMAIL_NOT_VALIDATED)
        reservation = await self._p.store.reserve_code(login.nir_ref, self._policy.quota_rule, now)
        raise_if_locked(reservation.locks, self._quota)
        assert reservation.ticket is not None
        code = new_security_code()
        digest = self._p.keyring.code_digest(login.login_id, code)
        # A code cannot outlive its login: near the login's end it is valid for less time,
        # and the email says so.
        expire_time = min(now + self._policy.code_ttl, login.expire_time)
        try:
            if not await self._p.store.set_code(login.login_id, digest, expire_time):
                raise _login_not_found()
            await self._p.mailer.send_security_code(
                account.email, code, _whole_minutes((expire_time - now).total_seconds())
            )
        except Exception:
            await self._p.store.release_code(
                login.nir_ref, reservation.ticket, login.login_id, digest
            )
            raise
        remaining = max(0, self._policy.code_quota - reservation.codes_sent)
        return CodeSent(login.masked_email, expire_time, remaining)

    async def verify_code(self, login_id: str, code: str, trust_device: bool) -> CodeVerified:
        """Login exists, no lock, a code was requested, not expired, then it matches."""
        now = self._p.clock.now()
        login, account = await self._open_login(login_id, now)
        if login.code_digest is None or login.code_expire_time is None:
            raise AuthError(ErrorReason.CODE_NOT_REQUESTED, Messages.CODE_NOT_REQUESTED)
        if login.code_expire_time <= now:
            raise AuthError(ErrorReason.CODE_EXPIRED, Messages.code_expired(self._policy.code_ttl))
        claim = await self._claim(login.nir_ref, AttemptKind.CODE, now)
        assert claim.ticket is not None
        typed = "".join(code[:MAX_SECRET_LENGTH].split())
        candidate = self._p.keyring.code_digest(login.login_id, typed)
        if not constant_time_equal(candidate, login.code_digest) or not (
            await self._p.store.consume_login(login.login_id, login.code_digest)
        ):
            raise await self._wrong_entry(claim, login.nir_ref, ErrorReason.INVALID_CODE, now)
        await self._p.store.settle_success(
            login.nir_ref, AttemptKind.CODE, claim.ticket, login_complete=True
        )
        methods = (AuthMethod.PASSWORD, AuthMethod.EMAIL_CODE)
        authenticated = await self._authenticated(account, login.nir_ref, methods, now, "")
        if not trust_device:
            return CodeVerified(authenticated)
        token = new_token()
        expire_time = add_calendar_months(now, self._policy.trusted_device_months)
        await self._p.devices.add(
            TrustedDevice(self._p.keyring.token_hash(token), account.account_id, now, expire_time)
        )
        return CodeVerified(authenticated, token, expire_time)

    async def _open_login(self, login_id: str, now: datetime) -> tuple[Login, Account]:
        """The pending login and its account, refused while the NIR is locked."""
        if not login_id or len(login_id) > MAX_ID_LENGTH:
            raise _login_not_found()
        login = await self._p.store.get_login(login_id, now)
        if login is None:
            raise _login_not_found()
        raise_if_locked(await self._p.store.active_locks(login.nir_ref, now), self._quota)
        account = await self._p.accounts.get(login.account_id)
        if account is None:  # reset by an advisor meanwhile
            raise _login_not_found()
        return login, account

    # --- advisor ----------------------------------------------------------------------

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

    async def reset_account(
        self, raw_nir: str, advisor_id: str, reason: str, send_provisional_code: bool
    ) -> AccountReset:
        """The advisor's "réinitialisation": delete the account, its devices, locks, counters."""
        nir = Nir.parse(raw_nir)
        _require_text("advisor_id", advisor_id, MAX_ID_LENGTH)
        _require_text("reason", reason, MAX_REASON_LENGTH)
        account = await self._p.accounts.get_by_nir(nir.value)
        if account is None:
            raise AuthError(ErrorReason.ACCOUNT_NOT_FOUND, Messages.ACCOUNT_NOT_FOUND)
        nir_ref, now = self._p.keyring.nir_ref(nir.value), self._p.clock.now()
        phone = account.mobile_phone if send_provisional_code else None
        provisional = await self._store_provisional_code(nir, now) if phone else None
        await self._p.accounts.delete(account.account_id)
        sent = False
        try:  # the account is gone: whatever happens next, the reset is audited
            await self._p.store.reset(nir_ref)
            if provisional and phone:
                sent = await self._send_provisional_code(phone, *provisional)
        finally:
            await self._audit(
                "account_reset",
                nir_ref,
                now,
                account.account_id,
                advisor_id,
                f"{reason[:200]} | provisional_code_sent={sent}",
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
        minutes = _whole_minutes(self._policy.provisional_code_ttl.total_seconds())
        try:
            await self._p.sms.send_provisional_code(phone, code, minutes)
        except Exception:
            await self._p.provisional_codes.consume(provisional.nir, provisional.code_hash)
            return False
        return True

    # --- shared steps -----------------------------------------------------------------

    @property
    def _quota(self) -> int:
        return self._policy.code_quota

    async def _claim(self, nir_ref: str, kind: AttemptKind, now: datetime) -> AttemptClaim:
        claim = await self._p.store.claim_attempt(
            nir_ref, kind, self._policy.failure_rule(kind), now
        )
        raise_if_locked(claim.locks, self._quota)
        return claim

    async def _wrong_entry(
        self, claim: AttemptClaim, nir_ref: str, reason: ErrorReason, now: datetime
    ) -> AuthError:
        """Case 4 with the attempts left, or — on the entry that reaches the limit — the lock."""
        if claim.lock is not None:
            await self._audit(f"locked_{claim.lock.kind.value}", nir_ref, now)
            return lock_error(claim.lock, self._quota)
        limit = self._policy.failure_rule(
            AttemptKind.PASSWORD if reason is ErrorReason.INVALID_CREDENTIALS else AttemptKind.CODE
        ).limit
        return AuthError(
            reason, Messages.wrong_entry(limit), attempts_remaining=max(0, limit - claim.failures)
        )

    async def _authenticated(
        self,
        account: Account,
        nir_ref: str,
        methods: tuple[AuthMethod, ...],
        now: datetime,
        client_ip: str,
    ) -> Authenticated:
        detail = ",".join(method.value for method in methods)
        await self._audit(
            "authenticated", nir_ref, now, account.account_id, detail=detail, client_ip=client_ip
        )
        return Authenticated(account.account_id, methods, now)

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


def _login_not_found() -> AuthError:
    return AuthError(ErrorReason.LOGIN_NOT_FOUND, Messages.LOGIN_NOT_FOUND)


def _whole_minutes(seconds: float) -> int:
    return max(1, -(-int(seconds) // 60))


def _require_text(field: str, value: str, max_length: int) -> None:
    if not value.strip() or len(value) > max_length:
        raise AuthError(
            ErrorReason.INVALID_REQUEST,
            Messages.INVALID_REQUEST,
            violations=(FieldViolation(field, f"obligatoire, {max_length} caractères au plus"),),
        )
