"""Fakes of every port of the domain, and ``make_service`` that wires the use cases to them.

No I/O: state lives in dicts, time in ``FakeClock``, the challenge store is the
real ``MemoryChallengeStore``. Every async fake method passes one turn of the
event loop (``checkpoint``), where a real adapter would wait on its database or
server, so that concurrent calls interleave as badly as they can in production.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ameli_grpc.adapters.memory_challenge_store import MemoryChallengeStore
from ameli_grpc.domain.advisor import AdvisorUseCases
from ameli_grpc.domain.errors import AuthError, DependencyUnavailable
from ameli_grpc.domain.login import LoginUseCases
from ameli_grpc.domain.model import (
    Account,
    AccountSetup,
    Affiliation,
    AuditEvent,
    AuthMethod,
    Channel,
    ProvisionalCode,
    TrustedDevice,
)
from ameli_grpc.domain.outcomes import CodeRequired, CredentialsInput
from ameli_grpc.domain.policy import Policy
from ameli_grpc.domain.ports import Ports
from ameli_grpc.domain.tokens import Keyring

# A winter Wednesday: a 15-minute lock taken now ends at 15:47 Paris time (guide, case 6).
START = datetime(2023, 1, 4, 14, 32, tzinfo=UTC)

NIR = "1850578006084"
OTHER_NIR = "2900175123456"
UNKNOWN_NIR = "1780399001002"
PASSWORD = "Correct-Horse-7"
EMAIL = "toto@test.com"
PHONE = "06 12 34 56 78"
SECRET_KEY = b"k" * 32


def nir_key(body: str) -> str:
    """The 2-digit key of a 13-character NIR, computed independently of the domain.

    INSEE rule: 97 minus the body modulo 97, with Corsica's 2A read as 19 and 2B as 18.
    """
    department = {"2A": "19", "2B": "18"}.get(body[5:7].upper(), body[5:7])
    return f"{97 - int(body[:5] + department + body[7:]) % 97:02d}"


def wrong_code(code: str) -> str:
    """Another 6-digit code than ``code``."""
    return f"{(int(code) + 1) % 10**6:06d}"


async def checkpoint() -> None:
    """One turn of the event loop (no waiting), where a real adapter would do I/O."""
    await asyncio.sleep(0)


def _aware_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("the clock only holds aware datetimes")
    return moment.astimezone(UTC)


class FakeClock:
    """A clock that only moves when a test moves it."""

    def __init__(self, now: datetime = START) -> None:
        self._now = _aware_utc(now)

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = _aware_utc(moment)

    def advance(self, delta: timedelta | None = None, /, **units: float) -> datetime:
        self._now += (delta or timedelta()) + timedelta(**units)
        return self._now


class FakeTrustedDeviceRepository:
    """Devices by token hash; ``add`` refuses a device whose account is gone, as the port says."""

    def __init__(self) -> None:
        self.devices: dict[str, TrustedDevice] = {}
        self.account_ids: Callable[[], Iterable[str]] | None = None  # set by the accounts fake
        self.audit: FakeAuditLog | None = None  # the audit log of the same "database", likewise

    async def add(self, device: TrustedDevice) -> bool:
        await checkpoint()
        if self.account_ids is not None and device.account_id not in self.account_ids():
            return False
        self.devices[device.token_hash] = device
        return True

    async def find(self, token_hash: str) -> TrustedDevice | None:
        await checkpoint()
        return self.devices.get(token_hash)

    async def list_for_account(self, account_id: str, now: datetime) -> tuple[TrustedDevice, ...]:
        await checkpoint()
        trusted = [
            d for d in self.devices.values() if d.account_id == account_id and d.expire_time > now
        ]
        return tuple(sorted(trusted, key=lambda d: (d.created_time, d.token_hash)))

    async def touch(self, token_hash: str, now: datetime) -> None:
        await checkpoint()
        device = self.devices.get(token_hash)
        if device is not None and (device.last_use_time is None or device.last_use_time < now):
            self.devices[token_hash] = replace(device, last_use_time=now)

    async def rehash(self, token_hash: str, new_token_hash: str) -> None:
        await checkpoint()
        device = self.devices.pop(token_hash, None)
        if device is not None:
            self.devices[new_token_hash] = replace(device, token_hash=new_token_hash)

    async def delete_for_account(
        self, account_id: str, now: datetime, audit_row: Callable[[int], AuditEvent]
    ) -> int:
        await checkpoint()
        mine = [d for d in self.devices.values() if d.account_id == account_id]
        revoked = sum(d.expire_time > now for d in mine)
        row = audit_row(revoked)  # built first: a failure here deletes nothing
        self.forget_account(account_id)
        if self.audit is not None:
            self.audit.events.append(row)
        return revoked

    def forget_account(self, account_id: str) -> None:
        for token_hash in [h for h, d in self.devices.items() if d.account_id == account_id]:
            del self.devices[token_hash]


class FakeAccountRepository:
    """Accounts by id; ``reset`` is all or nothing over the account, its trusted devices, the
    provisional code and the audit row, as one SQL transaction is."""

    def __init__(
        self,
        devices: FakeTrustedDeviceRepository,
        provisional_codes: FakeProvisionalCodeRepository | None = None,
        audit: FakeAuditLog | None = None,
    ) -> None:
        self.accounts: dict[str, Account] = {}
        self.password_updates: list[tuple[str, str]] = []
        self.reset_failure: Exception | None = None  # raised inside ``reset``: rolled back
        self._devices = devices
        self._provisional_codes = provisional_codes or FakeProvisionalCodeRepository()
        self._audit = audit or FakeAuditLog()
        devices.account_ids = self.accounts.keys
        devices.audit = self._audit

    def put(self, account: Account) -> None:
        """Seed ``account`` as it is (its own id), replacing any account of the same NIR."""
        for account_id in [i for i, a in self.accounts.items() if a.nir == account.nir]:
            del self.accounts[account_id]
        self.accounts[account.account_id] = account

    async def get_by_nir(self, nir: str) -> Account | None:
        await checkpoint()
        return next((a for a in self.accounts.values() if a.nir == nir), None)

    async def get_with_provisional_code(
        self, nir: str
    ) -> tuple[Account | None, ProvisionalCode | None]:
        await checkpoint()
        account = next((a for a in self.accounts.values() if a.nir == nir), None)
        return account, self._provisional_codes.codes.get(nir)

    async def get(self, account_id: str) -> Account | None:
        await checkpoint()
        return self.accounts.get(account_id)

    async def add(self, account: Account) -> None:
        """Insert, or replace the account of the same NIR, which keeps its ``account_id``."""
        await checkpoint()
        existing = next((a for a in self.accounts.values() if a.nir == account.nir), None)
        self.put(account if existing is None else replace(account, account_id=existing.account_id))

    async def update_password_hash(self, account_id: str, password_hash: str) -> None:
        await checkpoint()
        self.password_updates.append((account_id, password_hash))
        account = self.accounts[account_id]
        self.accounts[account_id] = replace(account, password_hash=password_hash)

    async def reset(
        self, account_id: str, provisional_code: ProvisionalCode | None, event: AuditEvent
    ) -> bool:
        await checkpoint()  # the transaction's statements: nothing is visible before the commit
        if self.reset_failure is not None:
            raise self.reset_failure
        if self.accounts.pop(account_id, None) is None:
            return False
        self._devices.forget_account(account_id)
        if provisional_code is not None:
            self._provisional_codes.codes[provisional_code.nir] = provisional_code
        self._audit.events.append(event)
        return True


class FakeProvisionalCodeRepository:
    def __init__(self) -> None:
        self.codes: dict[str, ProvisionalCode] = {}
        self.setups: list[AccountSetup] = []
        self.failure: Exception | None = None  # raised by ``put``: the database is down

    async def put(self, code: ProvisionalCode) -> None:
        await checkpoint()
        if self.failure is not None:
            raise self.failure
        self.codes[code.nir] = code

    async def consume(self, nir: str, code_hash: str) -> bool:
        await checkpoint()
        code = self.codes.get(nir)
        if code is None or code.code_hash != code_hash:
            return False
        del self.codes[nir]
        return True

    async def redeem(self, nir: str, code_hash: str, setup: AccountSetup) -> bool:
        if not await self.consume(nir, code_hash):
            return False
        self.setups.append(setup)
        return True


class FakeAuditLog:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def record(self, event: AuditEvent) -> None:
        await checkpoint()
        self.events.append(event)

    def of_kind(self, kind: str) -> list[AuditEvent]:
        return [event for event in self.events if event.kind == kind]


class FakeIdentityRegistry:
    """The RFI: every NIR is affiliated unless told otherwise; remembers who was looked up."""

    def __init__(self) -> None:
        self.affiliations: dict[str, Affiliation] = {}
        self.lookups: list[str] = []
        self.failure: Exception | None = None

    async def affiliation(self, nir: str) -> Affiliation:
        self.lookups.append(nir)
        await checkpoint()
        if self.failure is not None:
            raise self.failure
        return self.affiliations.get(nir, Affiliation.AFFILIATED)


@dataclass(frozen=True)
class SentCode:
    to: str
    code: str
    valid_minutes: int


class _FailingSender:
    """Records every attempt; ``sent`` only holds the ones that went out."""

    def __init__(self) -> None:
        self.attempts: list[SentCode] = []
        self.sent: list[SentCode] = []
        self.failure: Exception | None = None

    def fail(self, error: Exception | None = None) -> None:
        self.failure = error or DependencyUnavailable("sms", "the gateway is down")

    def recover(self) -> None:
        self.failure = None

    @property
    def last_code(self) -> str:
        return self.sent[-1].code

    async def _send(self, to: str, code: str, valid_minutes: int) -> None:
        message = SentCode(to, code, valid_minutes)
        self.attempts.append(message)
        await checkpoint()
        if self.failure is not None:
            raise self.failure
        self.sent.append(message)


class FakeMailer(_FailingSender):
    async def send_security_code(self, to: str, code: str, valid_minutes: int) -> None:
        await self._send(to, code, valid_minutes)


class FakeSmsSender(_FailingSender):
    async def send_provisional_code(self, phone: str, code: str, valid_minutes: int) -> None:
        await self._send(phone, code, valid_minutes)


class FakePasswordHasher:
    """``"fake$" + password``, instantly; counts the work it was asked for.

    Admission as the argon2 adapter's: with ``max_pending`` set, a request that
    would wait behind more than that many admitted ones is turned away; a test
    may also set ``pending`` to play a process already busy.
    """

    PREFIX = "fake$"

    def __init__(self) -> None:
        self.rehash_needed = False
        self.hash_calls = 0
        self.verify_calls = 0
        self.verify_dummy_calls = 0
        self.max_pending: int | None = None  # None: never sheds
        self.pending = 0
        self.refused = 0

    @contextmanager
    def admission(self) -> Iterator[bool]:
        if self.max_pending is not None and self.pending > self.max_pending:
            self.refused += 1
            yield False
            return
        self.pending += 1
        try:
            yield True
        finally:
            self.pending -= 1

    async def hash(self, password: str) -> str:
        self.hash_calls += 1
        await checkpoint()
        return self.PREFIX + password

    async def verify(self, password_hash: str, password: str) -> bool:
        self.verify_calls += 1
        await checkpoint()
        return password_hash == self.PREFIX + password

    async def verify_dummy(self, password: str) -> None:
        self.verify_dummy_calls += 1
        await checkpoint()

    def needs_rehash(self, password_hash: str) -> bool:
        return self.rehash_needed

    @property
    def verifications(self) -> int:
        """Real and dummy verifies: the argon2 work an attempt costs."""
        return self.verify_calls + self.verify_dummy_calls


@dataclass
class FakeEvents:
    """The tallies the metrics would show: logins by method, codes sent, locks by kind."""

    logins: Counter[AuthMethod] = field(default_factory=Counter)
    codes_sent: int = 0
    locks: Counter[str] = field(default_factory=Counter)

    def login_completed(self, method: AuthMethod) -> None:
        self.logins[method] += 1

    def code_sent(self) -> None:
        self.codes_sent += 1

    def lock_set(self, kind: str) -> None:
        self.locks[kind] += 1


@dataclass
class Fakes:
    clock: FakeClock
    devices: FakeTrustedDeviceRepository
    accounts: FakeAccountRepository
    provisional_codes: FakeProvisionalCodeRepository
    audit: FakeAuditLog
    registry: FakeIdentityRegistry
    store: MemoryChallengeStore
    mailer: FakeMailer
    sms: FakeSmsSender
    hasher: FakePasswordHasher
    keyring: Keyring
    events: FakeEvents
    _next_account: int = field(default=0, repr=False)

    def ports(self) -> Ports:
        return Ports(
            accounts=self.accounts,
            devices=self.devices,
            provisional_codes=self.provisional_codes,
            audit=self.audit,
            registry=self.registry,
            store=self.store,
            mailer=self.mailer,
            sms=self.sms,
            hasher=self.hasher,
            keyring=self.keyring,
            clock=self.clock,
            events=self.events,
        )

    def add_account(
        self,
        nir: str = NIR,
        password: str = PASSWORD,
        *,
        email: str | None = EMAIL,
        email_validated: bool = True,
        mobile_phone: str | None = PHONE,
    ) -> Account:
        """An account with a validated email (unless told otherwise), hashed by the fake hasher."""
        self._next_account += 1
        account = Account(
            account_id=f"account-{self._next_account}",
            nir=nir,
            password_hash=FakePasswordHasher.PREFIX + password,
            email=email,
            email_validated=email_validated,
            mobile_phone=mobile_phone,
        )
        self.accounts.put(account)
        return account

    def nir_ref(self, nir: str = NIR) -> str:
        return self.keyring.nir_ref(nir)


@dataclass(frozen=True)
class Service:
    """The two sibling use-case sets over the same fakes, as the composition root wires them."""

    login: LoginUseCases
    advisor: AdvisorUseCases


def make_service(policy: Policy | None = None, **overrides: Any) -> tuple[Service, Fakes]:
    """Both use-case sets over fresh fakes; any fake can be replaced by keyword (``store=...``)."""
    devices = overrides.pop("devices", None) or FakeTrustedDeviceRepository()
    provisional_codes = overrides.pop("provisional_codes", None) or FakeProvisionalCodeRepository()
    audit = overrides.pop("audit", None) or FakeAuditLog()
    parts: dict[str, Any] = {
        "clock": FakeClock(),
        "devices": devices,
        "accounts": FakeAccountRepository(devices, provisional_codes, audit),
        "provisional_codes": provisional_codes,
        "audit": audit,
        "registry": FakeIdentityRegistry(),
        "store": MemoryChallengeStore(),
        "mailer": FakeMailer(),
        "sms": FakeSmsSender(),
        "hasher": FakePasswordHasher(),
        "keyring": Keyring(SECRET_KEY),
        "events": FakeEvents(),
    }
    unknown = set(overrides) - set(parts)
    if unknown:
        raise TypeError(f"no such fake: {sorted(unknown)}")
    fakes = Fakes(**{**parts, **overrides})
    policy = policy or Policy()
    ports = fakes.ports()
    return Service(LoginUseCases(ports, policy), AdvisorUseCases(ports, policy)), fakes


# --- scenario steps shared by the test modules -------------------------------------------


def credentials(
    nir: str = NIR,
    password: str = PASSWORD,
    channel: Channel = Channel.WEB,
    device_token: str = "",
) -> CredentialsInput:
    return CredentialsInput(
        nir=nir,
        password=password,
        channel=channel,
        device_token=device_token,
        client_ip="192.0.2.7",
    )


async def refusal(awaitable: Awaitable[object]) -> AuthError:
    """The ``AuthError`` that ``awaitable`` raises (the test fails if it succeeds)."""
    with pytest.raises(AuthError) as caught:
        await awaitable
    return caught.value


async def start_login(service: Service, nir: str = NIR, password: str = PASSWORD) -> str:
    """CheckCredentials on the web with the right password: the id of the login awaiting a code."""
    outcome = await service.login.check_credentials(credentials(nir, password))
    assert isinstance(outcome, CodeRequired)
    return outcome.login_id


async def send_code(service: Service, fakes: Fakes, login_id: str) -> str:
    """RequestCode, and the code as it arrived in the mailbox."""
    await service.login.request_code(login_id)
    return fakes.mailer.last_code
