"""What the use cases return on success (refusals are ``AuthError``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ameli_grpc.domain.errors import ErrorReason
from ameli_grpc.domain.model import Affiliation, AuthMethod, Channel, LockScope


@dataclass(frozen=True)
class ClientInfo:
    """Who the gateway says is on the other end: the person's address and browser (SPEC §7.4)."""

    ip: str = ""
    user_agent: str = ""


NO_CLIENT = ClientInfo()  # no address given: not regulated


@dataclass(frozen=True)
class CredentialsInput:
    nir: str
    password: str
    channel: Channel = Channel.WEB
    device_token: str = ""
    client_ip: str = ""
    user_agent: str = ""

    @property
    def client(self) -> ClientInfo:
        return ClientInfo(self.client_ip, self.user_agent)


@dataclass(frozen=True)
class CodeRequired:
    login_id: str
    masked_email: str
    login_expire_time: datetime


@dataclass(frozen=True)
class Authenticated:
    account_id: str
    methods: tuple[AuthMethod, ...]
    authenticate_time: datetime


@dataclass(frozen=True)
class AccountSetupRequired:
    setup_token: str


CredentialsOutcome = CodeRequired | Authenticated | AccountSetupRequired


@dataclass(frozen=True)
class CodeSent:
    masked_email: str
    code_expire_time: datetime
    codes_remaining: int


@dataclass(frozen=True)
class CodeVerified:
    authenticated: Authenticated
    device_token: str | None = None
    device_trust_expire_time: datetime | None = None


@dataclass(frozen=True)
class LockView:
    """A lock as the advisor sees it; a suspension has no ``expire_time``."""

    reason: ErrorReason
    expire_time: datetime | None
    message: str
    scope: LockScope = LockScope.ALL


@dataclass(frozen=True)
class LockStatus:
    locks: tuple[LockView, ...]
    password_failures: int
    code_failures: int
    codes_sent_in_window: int

    @property
    def locked(self) -> bool:
        return bool(self.locks)

    @property
    def suspended(self) -> bool:
        """A suspension (the consecutive-failure ceiling, SPEC §7.3) is among the locks."""
        return any(view.reason is ErrorReason.ACCOUNT_SUSPENDED for view in self.locks)


@dataclass(frozen=True)
class TrustedDeviceView:
    """A trusted device as the advisor sees it: its dates, never its token or token hash."""

    create_time: datetime
    expire_time: datetime
    last_use_time: datetime | None


@dataclass(frozen=True)
class AccountDetails:
    """What the advisor sees of an account (GetAccount): masked contacts, RFI, devices, locks.

    ``masked_email`` and ``masked_phone`` are empty when the account has none.
    """

    masked_email: str
    email_validated: bool
    masked_phone: str
    affiliation: Affiliation
    trusted_devices: tuple[TrustedDeviceView, ...]
    lock_status: LockStatus


@dataclass(frozen=True)
class AccountUnlocked:
    unlock_time: datetime
    locks_cleared: int


@dataclass(frozen=True)
class AccountReset:
    reset_time: datetime
    provisional_code_sent: bool
    masked_phone: str = ""
    provisional_code_expire_time: datetime | None = None


@dataclass(frozen=True)
class DevicesRevoked:
    revoke_time: datetime
    revoked_count: int  # the devices that were still trusted; expired ones are not counted
