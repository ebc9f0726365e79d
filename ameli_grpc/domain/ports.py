"""The ports: what the rules need from the outside world, as ``typing.Protocol`` nouns.

Adapters (``ameli_grpc.adapters``) implement them; unit tests use fakes. Any
adapter whose backing service cannot be reached raises
``DependencyUnavailable`` (never its driver's exception) so that the service
fails closed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from ameli_grpc.domain.clock import Clock
from ameli_grpc.domain.model import (
    Account,
    AccountSetup,
    Affiliation,
    AttemptClaim,
    AuditEvent,
    AuthMethod,
    CodeReservation,
    FailureCount,
    Lock,
    LockScope,
    Login,
    NirStatus,
    ProvisionalCode,
    TrustedDevice,
)
from ameli_grpc.domain.policy import ClientRule, FailureRule, QuotaRule
from ameli_grpc.domain.tokens import Keyring


class AccountRepository(Protocol):
    async def get_by_nir(self, nir: str) -> Account | None: ...

    async def get_with_provisional_code(
        self, nir: str
    ) -> tuple[Account | None, ProvisionalCode | None]:
        """The NIR's account and its provisional code (expired or not), in one read:
        what a password typed at the login form can be checked against."""

    async def get(self, account_id: str) -> Account | None: ...

    async def add(self, account: Account) -> None:
        """Insert, or replace the account of the same NIR, which keeps its ``account_id``."""

    async def update_password_hash(self, account_id: str, password_hash: str) -> None: ...

    async def reset(
        self, account_id: str, provisional_code: ProvisionalCode | None, event: AuditEvent
    ) -> bool:
        """The advisor's reset, in one transaction: delete the account **and its trusted
        devices**, store ``provisional_code`` if given (replacing any earlier code of the
        NIR) and write the audit row ``event``.

        All of it or nothing: False, with nothing written, if the account is
        already gone; an error leaves everything as it was.
        """


class TrustedDeviceRepository(Protocol):
    async def add(self, device: TrustedDevice) -> bool:
        """Store the device; False, storing nothing, if its account no longer exists
        (reset by an advisor meanwhile)."""

    async def find(self, token_hash: str) -> TrustedDevice | None:
        """The device of that token hash, expired or not (the domain judges expiry)."""

    async def list_for_account(self, account_id: str, now: datetime) -> tuple[TrustedDevice, ...]:
        """The account's devices still trusted at ``now`` (``expire_time`` after it), oldest
        first; expired ones are left out."""

    async def touch(self, token_hash: str, now: datetime) -> None:
        """Record that the device spared a login its code at ``now`` (one write, no read);
        a later use already recorded is kept."""

    async def rehash(self, token_hash: str, new_token_hash: str) -> None:
        """Store the device found by ``token_hash`` under ``new_token_hash`` instead (its
        token hashed under the current key after a rotation); the rest of it stays."""

    async def delete_for_account(
        self, account_id: str, now: datetime, audit_row: Callable[[int], AuditEvent]
    ) -> int:
        """Delete every device of the account, expired ones included, and write the audit
        row ``audit_row(revoked)``, in one transaction (all of it, or nothing).

        ``revoked`` (returned) is how many of them were still trusted at ``now``:
        those that stopped being trusted (an expired device was trusted no more).
        """


class ProvisionalCodeRepository(Protocol):
    async def put(self, code: ProvisionalCode) -> None:
        """Store the provisional code of a NIR, replacing any earlier one."""

    async def consume(self, nir: str, code_hash: str) -> bool:
        """Delete that exact code; True for the one caller that deleted it (single use)."""

    async def redeem(self, nir: str, code_hash: str, setup: AccountSetup) -> bool:
        """In one transaction: consume that exact code and record the setup token.

        True for the one caller that redeemed it; False if it was already used.
        """


class AuditLog(Protocol):
    async def record(self, event: AuditEvent) -> None: ...


class IdentityRegistry(Protocol):
    """The RFI: is this NIR covered by the Régime Général or a partner scheme?"""

    async def affiliation(self, nir: str) -> Affiliation: ...


class AffiliationRecords(Protocol):
    """The RFI's reference table kept beside the accounts, filled by the account import."""

    async def set_affiliation(self, nir: str, affiliation: Affiliation) -> None: ...


class Mailer(Protocol):
    async def send_security_code(self, to: str, code: str, valid_minutes: int) -> None:
        """Send the email of step 2; raise ``DependencyUnavailable`` if it was not accepted."""


class SmsSender(Protocol):
    async def send_provisional_code(self, phone: str, code: str, valid_minutes: int) -> None:
        """Send the advisor's provisional code; raise ``DependencyUnavailable`` on failure."""


class PasswordHasher(Protocol):
    """Slow password hashing; implementations must not block the event loop."""

    def admission(self) -> AbstractContextManager[bool]:
        """A place among this process's pending verifications, held for the ``with`` block.

        Enters as True, or as False (holding nothing) when the request would
        wait behind more verifications, queued or running, than the process
        allows, or would expect to wait longer than it allows: the caller then
        sheds the request instead of queueing it.
        """

    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool: ...

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of a real verify, for a NIR that has no account."""

    def needs_rehash(self, password_hash: str) -> bool: ...


class ChallengeStore(Protocol):
    """Short-lived state of each NIR: logins, codes, failure counters, quota, locks;
    and of each client address: its failure counter and throttle (SPEC §7.4).

    Each method is one atomic step: parallel calls, and calls from other
    replicas, can never interleave inside it. ``nir_ref`` is the keyed hash of
    the NIR (``Keyring.nir_ref``), never the NIR itself; ``client_ref`` that of
    a client address (``Keyring.client_ref``), never the address itself.
    """

    async def active_locks(
        self, nir_ref: str, now: datetime, scopes: frozenset[LockScope]
    ) -> tuple[Lock, ...]:
        """The live locks (suspensions included) of the NIR whose scope is in ``scopes``."""

    async def locks_and_generation(
        self, nir_ref: str, now: datetime
    ) -> tuple[tuple[Lock, ...], str]:
        """Every live lock of the NIR (all scopes) and its login generation, in one read.

        The generation is an opaque mark that ``end_logins`` replaces by a new
        value, never by an earlier one: a login step that read it before an
        advisor's reset sees it changed afterwards.
        """

    async def generation(self, nir_ref: str) -> str:
        """The NIR's login generation now (see ``locks_and_generation``)."""

    async def end_logins(self, nir_ref: str, login_ttl: timedelta) -> None:
        """Move the NIR's login generation on: every login created before is gone.

        ``get_login``, ``set_code`` and ``consume_login`` of those logins then
        answer as for an unknown login, and ``create_login`` of a login read
        with the earlier generation refuses. ``login_ttl`` is the longest a
        login lives: the mark is kept at least that long.
        """

    async def claim_attempt(
        self, nir_ref: str, rule: FailureRule, scopes: frozenset[LockScope], now: datetime
    ) -> AttemptClaim:
        """Before evaluating a password or a code: may it be evaluated?

        If a live lock of ``scopes`` exists: refused with it, nothing counted.
        Otherwise forget the failures of ``rule`` (its kind and scope) older than
        ``rule.window`` and the attempts in flight older than ``PENDING_FOR``;
        if fewer than ``rule.limit`` failures are settled but the settled ones
        and those in flight reach it: refused ``in_progress``, nothing counted
        (no lock exists yet, and none may be reported). Else the attempt is put
        in flight under a new ticket. So no more than ``limit`` attempts are
        ever evaluated in a window, and a right one is never refused by a lock
        that does not exist.
        """

    async def settle_failure(
        self, nir_ref: str, rule: FailureRule, ticket: str, now: datetime
    ) -> FailureCount:
        """The attempt was wrong: count it (window, day, ceiling) and set what it reaches.

        ``rule.limit`` failures in the window lock ``rule.lock_kind`` of
        ``rule.scope`` for ``rule.lock_for``; ``rule.daily_limit`` in a sliding
        day for ``rule.daily_lock`` (whichever ends later); ``rule.ceiling``
        failures of ``rule.ceiling_scope`` since the last successful login
        suspend that scope until ``reset``. Returns the failures in the window
        and the lock (or suspension) this failure set.
        """

    async def settle_success(
        self, nir_ref: str, rule: FailureRule, ticket: str, *, login_complete: bool
    ) -> None:
        """The attempt was right: it is no longer in flight; the failures of its rule are cleared.

        With ``login_complete`` (the person is logged in) also clear the password
        failures of ``rule.ceiling_scope`` (the request's own scope), the code
        failures, the code quota and the ceiling count of that scope.
        Another scope's failures stay: the owner's success does not erase an
        attacker's count, nor the reverse.
        """

    async def release_attempt(self, nir_ref: str, rule: FailureRule, ticket: str) -> None:
        """The attempt could not be evaluated (an outage): forget it, count nothing."""

    async def create_login(self, login: Login, ttl_seconds: int) -> str | None:
        """Store a new login (its ``login_id`` is ignored) and return its new opaque id.

        In the same atomic step: None, storing nothing, if ``login.generation``
        is no longer the NIR's (its logins were ended since it was read).
        """

    async def get_login(self, login_id: str, now: datetime) -> Login | None:
        """The login, or None if unknown, malformed, expired or ended (``end_logins``)."""

    async def reserve_code(
        self, nir_ref: str, rule: QuotaRule, scopes: frozenset[LockScope], now: datetime
    ) -> CodeReservation:
        """Count one code request in the sliding-window quota.

        If a lock of ``scopes`` is active: return it. Otherwise forget requests older than
        ``rule.window``; if ``rule.limit`` are left, set the quota lock until
        ``now + rule.lock_for`` and return it (``lock_set``); else add this one
        under a ticket.
        """

    async def set_code(self, login_id: str, code_digest: str, code_expire_time: datetime) -> bool:
        """Make this code the only valid one of the login; False if the login is gone
        (expired or ended)."""

    async def release_code(
        self, nir_ref: str, ticket: str, login_id: str, code_digest: str
    ) -> None:
        """Undo a reservation whose email could not be sent: uncount it, drop that code."""

    async def consume_login(self, login_id: str, code_digest: str) -> bool:
        """Delete the login if its current code is still ``code_digest`` and it was not
        ended; True if deleted."""

    async def status(
        self, nir_ref: str, now: datetime, failure_window: timedelta, quota_window: timedelta
    ) -> NirStatus:
        """Active locks, and the failures and code requests still inside their windows."""

    async def reset(self, nir_ref: str) -> None:
        """Forget every lock, suspension, failure, daily and ceiling count and the quota
        of the NIR, in every scope (advisor's unlock and reset). Its logins and their
        generation stay."""

    async def client_throttle(self, client_ref: str, now: datetime) -> datetime | None:
        """When the throttle of the client address ends, if one is active at ``now``; else None.

        Reads only. A throttle is active while ``now`` is before its end.
        """

    async def count_client_failure(
        self, client_ref: str, rule: ClientRule, now: datetime
    ) -> datetime | None:
        """Count one wrong entry of the client address; the throttle's end if this one set it.

        If a throttle is active: count nothing, return None. Otherwise forget
        the failures at or before ``now - rule.window``, add this one, and if
        the count reaches ``rule.limit`` set the throttle until
        ``now + rule.lock_for`` and return that end. So however many failures
        arrive at once, on however many replicas, exactly one sets it.
        """

    async def adopt(self, ref: str, previous_refs: Sequence[str], now: datetime) -> bool:
        """After a rotation of the secret key, merge into ``ref`` what is kept under
        ``previous_refs`` (the same NIR, or client address, under the previous keys) and
        forget it there; True if anything was found.

        Nothing is lifted or reset by the move: failures, daily failures and code
        requests are united, each lock ends at the later of its two ends (a
        suspension wins), the ceiling count and a client's throttle keep the larger
        value. Attempts in flight stay where they were claimed; logins are not
        moved (a login keeps its id). Safe to repeat and to run in parallel: the
        state is merged before it is forgotten, and every caller that still finds
        it merges it itself, so no request goes on before the state is under ``ref``.
        """

    async def ping(self) -> None:
        """Raise ``DependencyUnavailable`` if the store cannot be reached (health)."""


class Events(Protocol):
    """What the operators count (SPEC §9 metrics): plain tallies, never a NIR, email or address.

    Called on the request's path: an implementation only bumps a counter.
    """

    def login_completed(self, method: AuthMethod) -> None:
        """A person is logged in; ``method`` completed it: ``EMAIL_CODE``, ``TRUSTED_DEVICE``,
        or ``PASSWORD`` where no code was due (mobile app, FranceConnect without code)."""

    def code_sent(self) -> None:
        """A security code was accepted by the mail service."""

    def lock_set(self, kind: str) -> None:
        """A lock was set: a NIR's (``LockKind`` value: ``password``, ``code``, ``quota``,
        ``suspended``) or a client address's throttle (``client``)."""


class NoEvents:
    """Counts nothing: the default where no metrics are wanted (unit tests, commands)."""

    def login_completed(self, method: AuthMethod) -> None:
        pass

    def code_sent(self) -> None:
        pass

    def lock_set(self, kind: str) -> None:
        pass


NO_EVENTS: Events = NoEvents()
CLIENT_THROTTLE = "client"  # the lock kind of a client address's throttle (SPEC §7.4)


@dataclass(frozen=True)
class Ports:
    """Every port the use cases need, wired by ``ameli_grpc.bootstrap``."""

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
    events: Events = NO_EVENTS
