"""The login of the guide, in the order of SPEC §2: CheckCredentials, RequestCode, VerifyCode.

Every rule has its line here. ``LoginUseCases`` only talks to ports;
``ameli_grpc.bootstrap`` plugs adapters in. The advisor's use cases are its
sibling, ``ameli_grpc.domain.advisor.AdvisorUseCases``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import NoReturn

from ameli_grpc.domain.attempts import Attempts
from ameli_grpc.domain.audit import AuditKind, AuditTrail
from ameli_grpc.domain.clients import ClientRegulation, RegulatedClient
from ameli_grpc.domain.clock import add_calendar_months
from ameli_grpc.domain.errors import AuthError, ErrorReason, FieldViolation
from ameli_grpc.domain.locks import raise_if_locked
from ameli_grpc.domain.masking import mask_email
from ameli_grpc.domain.messages import Messages, whole_minutes
from ameli_grpc.domain.model import (
    Account,
    AccountSetup,
    Affiliation,
    AttemptKind,
    AuthMethod,
    Channel,
    Lock,
    LockKind,
    LockScope,
    Login,
    ProvisionalCode,
    TrustedDevice,
)
from ameli_grpc.domain.nir import Nir
from ameli_grpc.domain.outcomes import (
    NO_CLIENT,
    AccountSetupRequired,
    Authenticated,
    ClientInfo,
    CodeRequired,
    CodeSent,
    CodeVerified,
    CredentialsInput,
    CredentialsOutcome,
)
from ameli_grpc.domain.overload import hash_admission
from ameli_grpc.domain.policy import FailureRule, Policy, QuotaRule
from ameli_grpc.domain.ports import Ports
from ameli_grpc.domain.rotation import KeyRotation
from ameli_grpc.domain.tokens import new_security_code, new_token, sha256_hex

# Reasons and texts only: each refusal is a new AuthError (a shared exception object
# would keep every raise's frames, and the secrets in them, alive).
_AFFILIATION_REFUSALS = {
    Affiliation.NOT_COVERED: (ErrorReason.NOT_COVERED, Messages.NOT_COVERED),
    Affiliation.PENDING: (ErrorReason.AFFILIATION_PENDING, Messages.AFFILIATION_PENDING),
}


class LoginUseCases:
    """What the portal gateways call: the insured person's login, step by step."""

    def __init__(self, ports: Ports, policy: Policy) -> None:
        self._p = ports
        self._policy = policy
        self._audit = AuditTrail(ports.audit)
        self._attempts = Attempts(ports.store, self._audit, policy.quota_rule, ports.events)
        self._clients = ClientRegulation(
            ports.store, ports.keyring, policy, self._audit, ports.events
        )
        self._rotation = KeyRotation(ports.keyring, ports.store, ports.devices)

    # --- CheckCredentials -------------------------------------------------------------

    async def check_credentials(self, request: CredentialsInput) -> CredentialsOutcome:
        """SPEC §2 "CheckCredentials, in this order", steps 1 to 8."""
        nir = Nir.parse(request.nir)  # 1
        now = self._p.clock.now()
        nir_ref = await self._rotation.nir_ref(nir.value, now)
        client = await self._clients.admit(request.client, now)  # SPEC §7.4
        with hash_admission(self._p.hasher):  # SPEC §7.5: shed before anything is read
            # The generation before the account: an advisor's reset committed after this
            # read changes it, and the login it would give is refused (SPEC §8).
            locks, generation = await self._p.store.locks_and_generation(nir_ref, now)
            familiar, rule, proof, ticket = await self._password_step(
                nir, nir_ref, request, (client, locks), now
            )
        if isinstance(proof, ProvisionalCode):  # 4
            return await self._start_account_setup(proof, nir_ref, rule, ticket, request, now)
        affiliation = await self._p.registry.affiliation(nir.value)  # 5
        if affiliation in _AFFILIATION_REFUSALS:
            raise AuthError(*_AFFILIATION_REFUSALS[affiliation])
        methods = self._methods_without_code(request.channel, familiar)  # 6
        if methods:
            await self._attempts.right(nir_ref, rule, ticket, login_complete=True)
            if AuthMethod.TRUSTED_DEVICE in methods:  # the device spared the code: its last use
                await self._p.devices.touch(self._p.keyring.token_hash(request.device_token), now)
            authenticated = await self._authenticated(proof, nir_ref, methods, now, request)
            await self._still_current(nir_ref, generation, proof.account_id, self._account_gone)
            return authenticated
        if proof.usable_email is None:  # 7
            raise AuthError(ErrorReason.EMAIL_NOT_VALIDATED, Messages.EMAIL_NOT_VALIDATED)
        return await self._create_login(proof, nir_ref, generation, now)  # 8

    async def _password_step(
        self,
        nir: Nir,
        nir_ref: str,
        request: CredentialsInput,
        seen: tuple[RegulatedClient | None, tuple[Lock, ...]],
        now: datetime,
    ) -> tuple[bool, FailureRule, Account | ProvisionalCode, str]:
        """Steps 2 and 3 in the request's scope: familiar or not, its rule, proof and ticket.

        ``seen``: what was read before the account, the client's regulation and
        every lock of the NIR (those of the request's scope stop it).
        """
        client, locks = seen
        # Read before the claim, so that a database outage counts nothing.
        account, provisional = await self._p.accounts.get_with_provisional_code(nir.value)
        if provisional is not None and provisional.expire_time <= now:
            provisional = None
        familiar = await self._is_familiar(account, request.device_token, now)  # SPEC §7.2
        scopes = LockScope.stopping(familiar)
        raise_if_locked(tuple(lock for lock in locks if lock.scope in scopes), self._quota)  # 2
        if not request.password.strip():  # the form was not filled: after the lock (SPEC §2)
            raise AuthError(
                ErrorReason.INVALID_REQUEST,
                Messages.INVALID_REQUEST,
                violations=(FieldViolation("password", Messages.REQUIRED_FIELD),),
            )
        rule = self._policy.failure_rule(AttemptKind.PASSWORD, familiar)
        proof, ticket = await self._verify_password(  # 3
            nir_ref, (account, provisional), request, (rule, scopes, client), now
        )
        return familiar, rule, proof, ticket

    async def _is_familiar(self, account: Account | None, token: str, now: datetime) -> bool:
        """A valid, unexpired trusted device of this NIR's account (SPEC §7.2).

        The device is looked up whenever a token is given, account or not, so
        the check costs the same for a NIR without an account.
        """
        if not token:
            return False
        device = await self._rotation.find_device(token)
        return (
            account is not None
            and device is not None
            and device.account_id == account.account_id
            and device.expire_time > now
        )

    async def _verify_password(
        self,
        nir_ref: str,
        stored: tuple[Account | None, ProvisionalCode | None],
        request: CredentialsInput,
        counted: tuple[FailureRule, frozenset[LockScope], RegulatedClient | None],
        now: datetime,
    ) -> tuple[Account | ProvisionalCode, str]:
        """Step 3: the password of the account, or a provisional code, claimed in advance.

        An unknown NIR costs the same argon2 verify and counts the same
        failure as a wrong password, so nobody can tell which NIRs exist.
        ``stored``: the NIR's account and its unexpired provisional code.
        """
        account, provisional = stored
        rule, scopes, client = counted
        ticket = await self._attempts.claim(nir_ref, rule, scopes, now)
        proof: Account | ProvisionalCode | None = account or provisional
        secret_hash = account.password_hash if account else None
        if secret_hash is None and provisional is not None:
            secret_hash = provisional.code_hash
        password = request.password
        try:
            right = await self._verify_secret(secret_hash, password)
        except Exception:
            await self._attempts.release(nir_ref, rule, ticket)
            raise
        if not right or proof is None:
            # unfamiliar failures also count against the client's address (SPEC §7.4)
            await self._clients.count_failure(
                client, nir_ref, now, familiar=rule.scope is LockScope.TRUSTED
            )
            raise await self._attempts.wrong(
                nir_ref,
                rule,
                ticket,
                now,
                account_id=account.account_id if account else None,
                client=request.client,
            )
        await self._attempts.right(nir_ref, rule, ticket, login_complete=False)
        if account is not None and self._p.hasher.needs_rehash(account.password_hash):
            new_hash = await self._p.hasher.hash(password)
            await self._p.accounts.update_password_hash(account.account_id, new_hash)
        return proof, ticket

    async def _verify_secret(self, secret_hash: str | None, password: str) -> bool:
        """argon2 against the hash, or against the dummy hash: the same cost either way."""
        if secret_hash:
            return await self._p.hasher.verify(secret_hash, password)
        await self._p.hasher.verify_dummy(password)
        return False

    async def _start_account_setup(
        self,
        provisional: ProvisionalCode,
        nir_ref: str,
        rule: FailureRule,
        ticket: str,
        request: CredentialsInput,
        now: datetime,
    ) -> AccountSetupRequired:
        """Step 4: a provisional code (single use) leads to account creation, no code step.

        The setup token is recorded (its SHA-256, the NIR, an expiry) for the
        account-creation flow that redeems it.
        """
        token = new_token()
        setup = AccountSetup(sha256_hex(token), provisional.nir, now + self._policy.login_ttl)
        if not await self._p.provisional_codes.redeem(
            provisional.nir, provisional.code_hash, setup
        ):
            # A concurrent login redeemed it first: that code was right, so nothing is counted
            # (its attempt is settled as right) and every attempt is left.
            raise AuthError(
                ErrorReason.INVALID_CREDENTIALS,
                Messages.wrong_entry(rule.limit),
                attempts_remaining=rule.limit,
            )
        await self._attempts.right(nir_ref, rule, ticket, login_complete=True)
        await self._audit.record(AuditKind.PROVISIONAL_CODE_USED, nir_ref, now, client=request)
        return AccountSetupRequired(setup_token=token)

    def _methods_without_code(self, channel: Channel, familiar: bool) -> tuple[AuthMethod, ...]:
        """Step 6: the channels and devices that need no security code (empty: a code is due)."""
        if channel is Channel.MOBILE_APP:
            return (AuthMethod.PASSWORD,)
        if channel is Channel.FRANCECONNECT:
            return () if self._policy.franceconnect_requires_code else (AuthMethod.PASSWORD,)
        if familiar:  # a valid trusted device of this account
            return (AuthMethod.PASSWORD, AuthMethod.TRUSTED_DEVICE)
        return ()

    async def _create_login(
        self, account: Account, nir_ref: str, generation: str, now: datetime
    ) -> CodeRequired:
        """Step 8: a login waiting for its security code (the email is on file and validated).

        Refused if an advisor reset the account since ``generation`` was read,
        with the answer of a NIR without an account (not counted: the password
        was right, and the reset has just cleared the counters).
        """
        assert account.usable_email is not None
        login = Login(
            login_id="",
            nir_ref=nir_ref,
            account_id=account.account_id,
            masked_email=mask_email(account.usable_email),
            expire_time=now + self._policy.login_ttl,
            generation=generation,
        )
        ttl = int(self._policy.login_ttl.total_seconds())
        login_id = await self._p.store.create_login(login, ttl)
        if login_id is None:
            raise self._account_gone()
        return CodeRequired(login_id, login.masked_email, login.expire_time)

    # --- RequestCode / VerifyCode -----------------------------------------------------

    async def request_code(self, login_id: str, client: ClientInfo = NO_CLIENT) -> CodeSent:
        """Count the request in the quota, send a new code, invalidate the previous one.

        A send that fails neither counts nor leaves a usable code. ``client`` is
        not regulated here: SPEC §7.4 throttles CheckCredentials and VerifyCode.
        """
        now = self._p.clock.now()
        login, account = await self._open_login(login_id, now)
        email = account.usable_email
        if email is None:
            raise AuthError(ErrorReason.EMAIL_NOT_VALIDATED, Messages.EMAIL_NOT_VALIDATED)
        reservation = await self._p.store.reserve_code(
            login.nir_ref, self._quota, _CODE_STEP_SCOPES, now
        )
        if reservation.lock_set:  # this request set the quota lock: audited and counted once
            self._p.events.lock_set(LockKind.CODE_QUOTA.value)
            await self._audit.record(
                AuditKind.LOCKED_QUOTA,
                login.nir_ref,
                now,
                account.account_id,
                detail=f"codes_sent={reservation.codes_sent}",
                client=client,
            )
        raise_if_locked(reservation.locks, self._quota)
        assert reservation.ticket is not None
        # A code cannot outlive its login: near the login's end it is valid for less time,
        # and the email says so.
        expire_time = min(now + self._policy.code_ttl, login.expire_time)
        # Shielded: a caller that gives up (deadline, cancel) does not stop the send half-way;
        # it completes, or fails and is undone, whatever happens to the call.
        await asyncio.shield(self._send_code(login, reservation.ticket, email, expire_time, now))
        remaining = max(0, self._policy.code_quota - reservation.codes_sent)
        return CodeSent(mask_email(email), expire_time, remaining)

    async def _send_code(
        self, login: Login, ticket: str, email: str, expire_time: datetime, now: datetime
    ) -> None:
        """Make a new code the login's only one and email it; on failure undo both."""
        code = new_security_code()
        digest = self._p.keyring.code_digest(login.login_id, code)
        try:
            if not await self._p.store.set_code(login.login_id, digest, expire_time):
                raise _login_not_found()
            await self._p.mailer.send_security_code(email, code, whole_minutes(expire_time - now))
        except Exception:
            await self._p.store.release_code(login.nir_ref, ticket, login.login_id, digest)
            raise
        self._p.events.code_sent()

    async def verify_code(
        self, login_id: str, code: str, trust_device: bool, client: ClientInfo = NO_CLIENT
    ) -> CodeVerified:
        """Login exists, no lock, a code was requested, not expired, then it matches."""
        now = self._p.clock.now()
        regulated = await self._clients.admit(client, now)  # SPEC §7.4
        login, account = await self._open_login(login_id, now)
        if login.code_digest is None or login.code_expire_time is None:
            raise AuthError(ErrorReason.CODE_NOT_REQUESTED, Messages.CODE_NOT_REQUESTED)
        if login.code_expire_time <= now:
            raise AuthError(ErrorReason.CODE_EXPIRED, Messages.code_expired(self._policy.code_ttl))
        rule = self._policy.failure_rule(AttemptKind.CODE)
        ticket = await self._attempts.claim(login.nir_ref, rule, _CODE_STEP_SCOPES, now)
        if not await self._consume(login, code, rule, ticket, now):
            await self._clients.count_failure(regulated, login.nir_ref, now, familiar=False)
            raise await self._attempts.wrong(
                login.nir_ref, rule, ticket, now, account_id=account.account_id, client=client
            )
        await self._attempts.right(login.nir_ref, rule, ticket, login_complete=True)
        methods = (AuthMethod.PASSWORD, AuthMethod.EMAIL_CODE)
        authenticated = await self._authenticated(account, login.nir_ref, methods, now, client)
        verified = CodeVerified(authenticated)
        if trust_device:
            verified = await self._trust_device(login, verified, now, client)
        await self._still_current(
            login.nir_ref, login.generation, account.account_id, _login_not_found
        )
        return verified

    async def _consume(
        self, login: Login, code: str, rule: FailureRule, ticket: str, now: datetime
    ) -> bool:
        """Is ``code`` the login's current code? If so the login is used up, by this call only.

        LOGIN_NOT_FOUND, counting nothing, if the right code finds the login gone
        meanwhile (ended by a reset, or used by a twin request); a right code
        that a newer one replaced meanwhile is a wrong entry.
        """
        assert login.code_digest is not None
        typed = "".join(code.split())
        # under the current key, or a previous one for a code sent before a rotation
        matches = self._p.keyring.code_matches(login.login_id, typed, login.code_digest)
        try:
            right = matches and await self._p.store.consume_login(login.login_id, login.code_digest)
            if matches and not right and not await self._p.store.get_login(login.login_id, now):
                raise _login_not_found()
        except Exception:
            await self._attempts.release(login.nir_ref, rule, ticket)
            raise
        return right

    async def _trust_device(
        self, login: Login, verified: CodeVerified, now: datetime, client: ClientInfo
    ) -> CodeVerified:
        """The box "ordinateur personnel" ticked: a new device token (kept as its HMAC), audited."""
        token = new_token()
        expire_time = add_calendar_months(now, self._policy.trusted_device_months)
        account_id = verified.authenticated.account_id
        device = TrustedDevice(self._p.keyring.token_hash(token), account_id, now, expire_time)
        if not await self._p.devices.add(device):  # the account is gone: reset meanwhile
            await self._void(login.nir_ref, account_id, _login_not_found)
        await self._audit.record(
            AuditKind.DEVICE_TRUSTED,
            login.nir_ref,
            now,
            account_id,
            detail=f"until={expire_time.isoformat()}",  # never the token
            client=client,
        )
        return CodeVerified(verified.authenticated, token, expire_time)

    async def _open_login(self, login_id: str, now: datetime) -> tuple[Login, Account]:
        """The pending login and its account, refused while the NIR is locked."""
        if not login_id:
            raise _login_not_found()
        login = await self._p.store.get_login(login_id, now)
        if login is None:
            raise _login_not_found()
        locks = await self._p.store.active_locks(login.nir_ref, now, _CODE_STEP_SCOPES)
        raise_if_locked(locks, self._quota)
        account = await self._p.accounts.get(login.account_id)
        if account is None:  # reset by an advisor meanwhile
            raise _login_not_found()
        # made before a key rotation: from now on under the current ref, whose locks the
        # claim or the reservation that follows checks in the same step as it counts
        return await self._rotation.rebased(login, account.nir, now), account

    # --- shared steps -----------------------------------------------------------------

    async def _still_current(
        self, nir_ref: str, generation: str, account_id: str, refusal: Callable[[], AuthError]
    ) -> None:
        """The last step before a success is answered: was the account reset meanwhile?

        Last, after every write of the login, so that no success is answered
        once ``reset_account`` has returned (SPEC §8).
        """
        if await self._p.store.generation(nir_ref) != generation:
            await self._void(nir_ref, account_id, refusal)

    async def _void(
        self, nir_ref: str, account_id: str, refusal: Callable[[], AuthError]
    ) -> NoReturn:
        """Refuse a login whose account an advisor reset while it was being answered.

        Its ``authenticated`` row is already written: a second row says that
        the login was refused after all.
        """
        now = self._p.clock.now()
        detail = "account_reset"
        await self._audit.record(
            AuditKind.AUTHENTICATION_VOIDED, nir_ref, now, account_id, detail=detail
        )
        raise refusal()

    def _account_gone(self) -> AuthError:
        """CheckCredentials of an account reset meanwhile: as for a NIR without an account."""
        return AuthError(
            ErrorReason.INVALID_CREDENTIALS,
            Messages.wrong_entry(self._policy.max_password_failures),
        )

    @property
    def _quota(self) -> QuotaRule:
        return self._policy.quota_rule

    async def _authenticated(
        self,
        account: Account,
        nir_ref: str,
        methods: tuple[AuthMethod, ...],
        now: datetime,
        client: CredentialsInput | ClientInfo,
    ) -> Authenticated:
        detail = ",".join(method.value for method in methods)
        await self._audit.record(
            AuditKind.AUTHENTICATED, nir_ref, now, account.account_id, detail=detail, client=client
        )
        self._p.events.login_completed(methods[-1])  # the method that completed the login
        return Authenticated(account.account_id, methods, now)


# A login waiting for its code came from an unfamiliar request (a familiar one needs no code).
_CODE_STEP_SCOPES = LockScope.stopping(familiar=False)


def _login_not_found() -> AuthError:
    return AuthError(ErrorReason.LOGIN_NOT_FOUND, Messages.LOGIN_NOT_FOUND)
