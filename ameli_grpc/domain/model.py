"""Value objects and records of the login: accounts, devices, locks, logins."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Channel(enum.Enum):
    """Where the insured person logs in from."""

    WEB = "web"
    MOBILE_APP = "mobile_app"
    FRANCECONNECT = "franceconnect"


class AuthMethod(enum.Enum):
    """How the insured person proved who they are."""

    PASSWORD = "password"
    EMAIL_CODE = "email_code"
    TRUSTED_DEVICE = "trusted_device"
    PROVISIONAL_CODE = "provisional_code"


class Affiliation(enum.Enum):
    """What the identity registry (RFI) says of a NIR (guide, cases 7 and 8)."""

    AFFILIATED = "affiliated"
    PENDING = "pending"
    NOT_COVERED = "not_covered"


class AttemptKind(enum.Enum):
    """The two secrets whose wrong entries are counted separately."""

    PASSWORD = "password"
    CODE = "code"


class LockKind(enum.Enum):
    """The three locks of the guide and the suspension (SPEC §7.3); the store's names."""

    PASSWORD_ATTEMPTS = "password"
    CODE_ATTEMPTS = "code"
    CODE_QUOTA = "quota"
    SUSPENDED = "suspended"


class LockScope(enum.Enum):
    """Which requests a lock stops (smart lockout, SPEC §7.2); the store's names.

    A request is *familiar* when it carries a valid trusted device of the NIR's
    account; its password failures and locks are kept apart from the others'.
    """

    ALL = "all"
    UNTRUSTED = "untrusted"
    TRUSTED = "trusted"

    @staticmethod
    def of(familiar: bool) -> LockScope:
        return LockScope.TRUSTED if familiar else LockScope.UNTRUSTED

    @staticmethod
    def stopping(familiar: bool) -> frozenset[LockScope]:
        """The scopes whose locks stop a familiar (or unfamiliar) request."""
        return frozenset({LockScope.ALL, LockScope.of(familiar)})


@dataclass(frozen=True)
class Account:
    """An ameli account as the login sees it. ``nir`` is the 13-character form."""

    account_id: str
    nir: str
    password_hash: str
    email: str | None
    email_validated: bool
    mobile_phone: str | None

    @property
    def usable_email(self) -> str | None:
        """The address a code may be sent to: validated and well formed (else None, case 1)."""
        email = (self.email or "").strip()
        local, _, domain = email.rpartition("@")
        well_formed = (
            0 < len(email) <= 254
            and local
            and "." in domain.strip(".")
            and email.isprintable()
            and not any(ch.isspace() or ch in '<>,;"' for ch in email)
        )
        return email if self.email_validated and well_formed else None


@dataclass(frozen=True)
class TrustedDevice:
    """A browser the insured person declared personal; only the token's hash is kept."""

    token_hash: str
    account_id: str
    created_time: datetime
    expire_time: datetime
    last_use_time: datetime | None = None


@dataclass(frozen=True)
class ProvisionalCode:
    """A single-use code sent by SMS after an advisor reset, hashed like a password."""

    nir: str
    code_hash: str
    expire_time: datetime


@dataclass(frozen=True)
class AccountSetup:
    """What a provisional code turns into: a setup token for the account-creation flow.

    Only the token's SHA-256 is kept (the token is 256 random bits), so the
    account-creation service can check a token against it without our key.
    """

    token_hash: str
    nir: str
    expire_time: datetime


@dataclass(frozen=True)
class AuditEvent:
    """One line of the audit trail. ``nir_ref`` is the keyed hash of the NIR, never the NIR."""

    kind: str
    nir_ref: str
    occurred_time: datetime
    account_id: str | None = None
    advisor_id: str | None = None
    detail: str | None = None
    client_ip: str | None = None
    caller: str | None = None  # the calling application's name (SPEC §7.1)
    reason: str | None = None  # the advisor's free text
    user_agent: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Lock:
    """An active lock of a NIR until ``expire_time``; a suspension has none: an advisor lifts it."""

    kind: LockKind
    expire_time: datetime | None
    scope: LockScope = LockScope.ALL


@dataclass(frozen=True)
class Login:
    """A login between the password step and the code step.

    ``code_digest`` is the keyed hash of the latest code sent for it (None
    until RequestCode); ``nir_ref`` identifies the NIR in the store.
    ``generation`` is the NIR's login generation when the login was created
    (``ChallengeStore.end_logins`` moves it on, and the login is gone).
    """

    login_id: str
    nir_ref: str
    account_id: str
    masked_email: str
    expire_time: datetime
    code_digest: str | None = None
    code_expire_time: datetime | None = None
    generation: str = ""


@dataclass(frozen=True)
class AttemptClaim:
    """The store's answer to "may this password or code be evaluated?".

    A ``ticket`` (the attempt is in flight, counted against the limit until it
    is settled), or a refusal that counted nothing: ``locks`` stop the request,
    or ``in_progress`` — the attempts still in flight make up the limit.
    """

    ticket: str | None
    locks: tuple[Lock, ...] = ()
    in_progress: bool = False


@dataclass(frozen=True)
class FailureCount:
    """A wrong entry, settled: the failures in the window, and the lock it set, if any."""

    failures: int
    lock: Lock | None = None


@dataclass(frozen=True)
class CodeReservation:
    """The store's answer to "may a code be sent?": a quota ``ticket`` or the ``locks``.

    ``lock_set``: this very request found the quota used up and set its lock
    (audited once, ``locked_quota``); False when a lock was already there.
    """

    ticket: str | None
    codes_sent: int
    locks: tuple[Lock, ...] = ()
    lock_set: bool = False


@dataclass(frozen=True)
class NirStatus:
    """Everything the store knows about one NIR right now."""

    locks: tuple[Lock, ...]
    password_failures: int
    code_failures: int
    codes_sent_in_window: int
