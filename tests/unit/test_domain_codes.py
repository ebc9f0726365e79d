"""RequestCode and VerifyCode: quota, code lifetime, wrong codes, success, trusted devices."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fakes import (
    EMAIL,
    NIR,
    Fakes,
    Service,
    credentials,
    make_service,
    refusal,
    send_code,
    start_login,
    wrong_code,
)

from ameli_grpc.adapters.memory_challenge_store import MemoryChallengeStore
from ameli_grpc.domain import login as login_module
from ameli_grpc.domain.errors import AuthError, DependencyUnavailable, ErrorReason
from ameli_grpc.domain.messages import Messages
from ameli_grpc.domain.model import AuthMethod, Channel, Lock, LockKind, LockScope, NirStatus
from ameli_grpc.domain.outcomes import Authenticated, CodeVerified
from ameli_grpc.domain.policy import Policy

QUOTA_LOCK_1505 = (
    "Le nombre maximum de demandes de code a été atteint. L'accès au service est bloqué "
    "jusqu'au 05/01/2023 - 15h05 (heure de Paris). À la fin du blocage, pensez à vérifier "
    "le dossier Spam ou Indésirable de votre boîte mail."
)
CODE_LOCK_1445 = (
    "Les informations saisies sont erronées. L'accès au service est bloqué jusqu'au "
    "05/01/2023 - 14h45 (heure de Paris)."
)
WRONG_ENTRY = (
    "Les informations saisies sont erronées. Merci de vérifier votre saisie. "
    "Attention : 3 essais infructueux bloquent l'accès au service."
)
CODE_EXPIRED_15 = (
    "Le code de sécurité n'a pas été saisi dans les 15 minutes. Merci d'en demander un nouveau."
)


async def _ready(
    policy: Policy | None = None, now: datetime | None = None
) -> tuple[Service, Fakes, str]:
    """A service, its fakes, and a login past the password step of an account with an email."""
    service, fakes = make_service(policy)
    if now is not None:
        fakes.clock.set(now)
    fakes.add_account()
    return service, fakes, await start_login(service)


# --- RequestCode ---------------------------------------------------------------------------


async def test_request_code_mails_a_six_digit_code_valid_fifteen_minutes() -> None:
    """The code goes to the account's address with its lifetime; the answer masks the address."""
    service, fakes, login_id = await _ready()

    sent = await service.login.request_code(login_id)

    (mail,) = fakes.mailer.sent
    assert (mail.to, mail.valid_minutes) == (EMAIL, 15)
    assert len(mail.code) == 6
    assert mail.code.isascii()
    assert mail.code.isdigit()
    assert sent.masked_email == "t***@t***.com"
    assert sent.code_expire_time == fakes.clock.now() + timedelta(minutes=15)
    assert sent.codes_remaining == 4


async def test_the_sixth_code_in_an_hour_locks_the_nir_for_an_hour() -> None:
    """Five codes count down the quota; the sixth is CODE_QUOTA_EXCEEDED until 15:05 Paris."""
    service, fakes, login_id = await _ready(now=datetime(2023, 1, 5, 13, 0, tzinfo=UTC))
    remaining = []
    for _ in range(5):
        remaining.append((await service.login.request_code(login_id)).codes_remaining)
        fakes.clock.advance(minutes=1)

    error = await refusal(service.login.request_code(login_id))

    assert remaining == [4, 3, 2, 1, 0]
    assert error.reason is ErrorReason.CODE_QUOTA_EXCEEDED
    assert error.lock_expire_time == datetime(2023, 1, 5, 14, 5, tzinfo=UTC)
    assert error.message == QUOTA_LOCK_1505
    assert (
        error.quota_violation == "5 codes de sécurité au plus par période glissante de 60 minutes"
    )
    assert len(fakes.mailer.sent) == 5


async def test_the_quota_lock_blocks_every_step_for_an_hour() -> None:
    """The quota lock refuses the password, new codes and the last code, then ends."""
    service, fakes, login_id = await _ready()
    for _ in range(5):
        code = await send_code(service, fakes, login_id)
    quota = await refusal(service.login.request_code(login_id))

    for blocked in (
        service.login.check_credentials(credentials()),
        service.login.request_code(login_id),
        service.login.verify_code(login_id, code, False),
    ):
        error = await refusal(blocked)
        assert error.reason is ErrorReason.CODE_QUOTA_EXCEEDED
        assert error.lock_expire_time == quota.lock_expire_time
    fakes.clock.advance(hours=1)
    assert (await service.login.request_code(await start_login(service))).codes_remaining == 4


async def test_the_quota_window_slides() -> None:
    """A code request older than an hour no longer counts in the quota."""
    service, fakes, login_id = await _ready()
    await service.login.request_code(login_id)
    fakes.clock.advance(minutes=30)
    for _ in range(4):
        await service.login.request_code(login_id)
    fakes.clock.advance(minutes=30)  # the first request is now exactly one hour old

    sent = await service.login.request_code(await start_login(service))

    assert sent.codes_remaining == 0
    assert (
        await refusal(service.login.request_code(login_id))
    ).reason is ErrorReason.LOGIN_NOT_FOUND
    error = await refusal(service.login.request_code(await start_login(service)))
    assert error.reason is ErrorReason.CODE_QUOTA_EXCEEDED


async def test_the_quota_follows_the_configuration() -> None:
    """With a quota of 2 codes, the third request locks for the configured time."""
    policy = Policy(code_quota=2, code_quota_lock=timedelta(minutes=20))
    service, fakes, login_id = await _ready(policy)

    remaining = [(await service.login.request_code(login_id)).codes_remaining for _ in range(2)]
    error = await refusal(service.login.request_code(login_id))

    assert remaining == [1, 0]
    assert error.lock_expire_time == fakes.clock.now() + timedelta(minutes=20)
    assert error.quota_violation is not None
    assert error.quota_violation.startswith("2 codes")


async def test_a_new_code_invalidates_the_previous_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the latest code of a login is accepted."""
    codes = iter(["111111", "222222"])
    monkeypatch.setattr(login_module, "new_security_code", lambda: next(codes))
    service, fakes, login_id = await _ready()
    first = await send_code(service, fakes, login_id)
    second = await send_code(service, fakes, login_id)

    error = await refusal(service.login.verify_code(login_id, first, False))
    outcome = await service.login.verify_code(login_id, second, False)

    assert (first, second) == ("111111", "222222")
    assert error.reason is ErrorReason.INVALID_CODE
    assert isinstance(outcome, CodeVerified)


async def test_a_new_code_does_not_reset_the_code_failures() -> None:
    """Two wrong codes, a new code, one more wrong code: the NIR is locked."""
    service, fakes, login_id = await _ready()
    code = await send_code(service, fakes, login_id)
    for _ in range(2):
        await refusal(service.login.verify_code(login_id, wrong_code(code), False))

    code = await send_code(service, fakes, login_id)
    error = await refusal(service.login.verify_code(login_id, wrong_code(code), False))

    assert error.reason is ErrorReason.CODE_ATTEMPTS_LOCKED


async def test_a_failed_send_neither_counts_nor_leaves_a_usable_code() -> None:
    """When the mail cannot be sent: UNAVAILABLE, the quota untouched, the unsent code useless."""
    service, fakes, login_id = await _ready()
    fakes.mailer.fail()

    for _ in range(8):
        with pytest.raises(DependencyUnavailable):
            await service.login.request_code(login_id)

    unsent = fakes.mailer.attempts[-1].code
    error = await refusal(service.login.verify_code(login_id, unsent, False))
    assert error.reason is ErrorReason.CODE_NOT_REQUESTED
    assert (await service.advisor.get_lock_status(NIR)).codes_sent_in_window == 0
    fakes.mailer.recover()
    assert (await service.login.request_code(login_id)).codes_remaining == 4


async def test_request_code_refuses_an_account_whose_email_is_no_longer_validated() -> None:
    """If the email lost its validation since the password step, no code is sent (case 1)."""
    service, fakes, login_id = await _ready()
    account = next(iter(fakes.accounts.accounts.values()))
    fakes.accounts.put(replace(account, email_validated=False))

    error = await refusal(service.login.request_code(login_id))

    assert error.reason is ErrorReason.EMAIL_NOT_VALIDATED
    assert fakes.mailer.attempts == []


@pytest.mark.parametrize("login_id", ["", "unknown", "x" * 10_000], ids=["empty", "unknown", "10k"])
async def test_request_code_of_an_unknown_login_is_login_not_found(login_id: str) -> None:
    """A login id that was never issued is LOGIN_NOT_FOUND, with no mail sent."""
    service, fakes, _ = await _ready()

    error = await refusal(service.login.request_code(login_id))

    assert error.reason is ErrorReason.LOGIN_NOT_FOUND
    assert error.message == "Votre session de connexion a expiré. Merci de vous reconnecter."
    assert fakes.mailer.attempts == []


# --- VerifyCode, in its order ----------------------------------------------------------------


@pytest.mark.parametrize("login_id", ["", "unknown", "x" * 10_000], ids=["empty", "unknown", "10k"])
async def test_verify_code_of_an_unknown_login_is_login_not_found(login_id: str) -> None:
    """An unknown login id is LOGIN_NOT_FOUND before anything else, and counts nothing."""
    service, _, _ = await _ready()

    error = await refusal(service.login.verify_code(login_id, "123456", False))

    assert error.reason is ErrorReason.LOGIN_NOT_FOUND
    assert (await service.advisor.get_lock_status(NIR)).code_failures == 0


async def test_a_login_expires_after_login_ttl() -> None:
    """An hour after the password step, the login is gone."""
    service, fakes, login_id = await _ready()
    code = await send_code(service, fakes, login_id)
    fakes.clock.advance(hours=1)

    error = await refusal(service.login.verify_code(login_id, code, False))

    assert error.reason is ErrorReason.LOGIN_NOT_FOUND


async def test_a_code_works_until_the_expiry_that_request_code_announced() -> None:
    """A code requested near the end of the login is accepted until its announced expiry."""
    service, fakes, login_id = await _ready()
    fakes.clock.advance(minutes=55)
    sent = await service.login.request_code(login_id)
    fakes.clock.set(sent.code_expire_time - timedelta(minutes=1))

    outcome = await service.login.verify_code(login_id, fakes.mailer.last_code, False)

    assert isinstance(outcome, CodeVerified)


async def test_a_lock_blocks_verify_code_even_with_the_right_code() -> None:
    """Three wrong passwords after the code was sent make the right code wait for the lock."""
    service, fakes, login_id = await _ready()
    code = await send_code(service, fakes, login_id)
    for _ in range(3):
        await refusal(service.login.check_credentials(credentials(password="nope")))

    error = await refusal(service.login.verify_code(login_id, code, False))

    assert error.reason is ErrorReason.PASSWORD_ATTEMPTS_LOCKED
    assert (await service.advisor.get_lock_status(NIR)).code_failures == 0


async def test_verify_code_before_any_code_is_code_not_requested() -> None:
    """Without RequestCode, VerifyCode is CODE_NOT_REQUESTED and is not counted."""
    service, _, login_id = await _ready()

    error = await refusal(service.login.verify_code(login_id, "123456", False))

    assert error.reason is ErrorReason.CODE_NOT_REQUESTED
    assert error.message == (
        "Aucun code de sécurité n'a été demandé. Cliquez sur « Recevoir un code de sécurité »."
    )
    assert (await service.advisor.get_lock_status(NIR)).code_failures == 0


async def test_an_expired_code_is_code_expired_and_not_a_failure() -> None:
    """Fifteen minutes after sending, even the right code is CODE_EXPIRED, and nothing counts."""
    service, fakes, login_id = await _ready()
    code = await send_code(service, fakes, login_id)
    fakes.clock.advance(minutes=15)

    errors = [
        await refusal(service.login.verify_code(login_id, guess, False))
        for guess in (code, wrong_code(code), wrong_code(code), wrong_code(code))
    ]

    assert {error.reason for error in errors} == {ErrorReason.CODE_EXPIRED}
    assert errors[0].message == CODE_EXPIRED_15
    assert (await service.advisor.get_lock_status(NIR)).code_failures == 0
    fresh = await send_code(service, fakes, login_id)
    assert isinstance(await service.login.verify_code(login_id, fresh, False), CodeVerified)


async def test_the_code_lifetime_follows_the_configuration() -> None:
    """With code_ttl at 10 minutes, the mail, the expiry and the CODE_EXPIRED text all say 10."""
    service, fakes, login_id = await _ready(Policy(code_ttl=timedelta(minutes=10)))
    sent = await service.login.request_code(login_id)
    fakes.clock.advance(minutes=9, seconds=59)
    still_valid = fakes.mailer.last_code
    early = await refusal(service.login.verify_code(login_id, wrong_code(still_valid), False))
    assert early.reason is ErrorReason.INVALID_CODE
    fakes.clock.advance(seconds=1)

    error = await refusal(service.login.verify_code(login_id, still_valid, False))

    assert fakes.mailer.sent[-1].valid_minutes == 10
    assert sent.code_expire_time == fakes.clock.now()
    assert error.reason is ErrorReason.CODE_EXPIRED
    assert error.message == (
        "Le code de sécurité n'a pas été saisi dans les 10 minutes. Merci d'en demander un nouveau."
    )


async def test_wrong_codes_count_down_then_lock_for_fifteen_minutes() -> None:
    """Two wrong codes leave 2 then 1 attempts; the third locks until 14:45 Paris (case 5)."""
    service, fakes, login_id = await _ready(now=datetime(2023, 1, 5, 13, 30, tzinfo=UTC))
    code = await send_code(service, fakes, login_id)

    errors = [
        await refusal(service.login.verify_code(login_id, wrong_code(code), False))
        for _ in range(3)
    ]

    assert [e.reason for e in errors] == [ErrorReason.INVALID_CODE] * 2 + [
        ErrorReason.CODE_ATTEMPTS_LOCKED
    ]
    assert [e.attempts_remaining for e in errors] == [2, 1, None]
    assert [errors[0].message, errors[1].message] == [WRONG_ENTRY] * 2
    assert errors[2].lock_expire_time == datetime(2023, 1, 5, 13, 45, tzinfo=UTC)
    assert errors[2].message == CODE_LOCK_1445
    assert fakes.audit.of_kind("locked_code")


async def test_the_code_lock_blocks_the_right_code_and_new_codes_then_ends() -> None:
    """While the code lock lasts even the right code is refused; afterwards a fresh login works."""
    service, fakes, login_id = await _ready()
    code = await send_code(service, fakes, login_id)
    for _ in range(3):
        await refusal(service.login.verify_code(login_id, wrong_code(code), False))

    right = await refusal(service.login.verify_code(login_id, code, False))
    again = await refusal(service.login.request_code(login_id))

    assert right.reason is again.reason is ErrorReason.CODE_ATTEMPTS_LOCKED
    fakes.clock.advance(minutes=15)
    login_id = await start_login(service)
    code = await send_code(service, fakes, login_id)
    assert isinstance(await service.login.verify_code(login_id, code, False), CodeVerified)


async def test_a_right_third_code_logs_in_instead_of_locking() -> None:
    """Two wrong codes then the right one: logged in, and no lock is left behind."""
    service, fakes, login_id = await _ready()
    code = await send_code(service, fakes, login_id)
    for _ in range(2):
        await refusal(service.login.verify_code(login_id, wrong_code(code), False))

    outcome = await service.login.verify_code(login_id, code, False)

    assert isinstance(outcome, CodeVerified)
    status = await service.advisor.get_lock_status(NIR)
    assert (status.locked, status.code_failures) == (False, 0)


async def test_a_code_that_is_not_valid_unicode_is_a_wrong_code() -> None:
    """A code with a lone surrogate is a wrong code, never a crash (SPEC §6)."""
    service, fakes, login_id = await _ready()
    await send_code(service, fakes, login_id)

    error = await refusal(service.login.verify_code(login_id, "12\ud80034", False))

    assert error.reason is ErrorReason.INVALID_CODE


async def test_a_code_is_read_with_the_spaces_of_the_mail() -> None:
    """The code typed as the mail shows it, "1 2 3 4 5 6", is accepted."""
    service, fakes, login_id = await _ready()
    code = await send_code(service, fakes, login_id)

    outcome = await service.login.verify_code(login_id, " ".join(code), False)

    assert isinstance(outcome, CodeVerified)


@pytest.mark.parametrize("typed", ["", "x" * 100_000, "１２３４５６", "12345"], ids=repr)
async def test_malformed_codes_are_wrong_codes(typed: str) -> None:
    """An empty, huge, non-ASCII or short code is a counted wrong code, never a crash."""
    service, fakes, login_id = await _ready()
    await send_code(service, fakes, login_id)

    error = await refusal(service.login.verify_code(login_id, typed, False))

    assert error.reason is ErrorReason.INVALID_CODE
    assert error.attempts_remaining == 2


# --- success ---------------------------------------------------------------------------------


async def test_the_right_code_logs_in_once_and_clears_counters_and_quota() -> None:
    """Success authenticates with password and code, consumes the login, clears everything."""
    service, fakes, login_id = await _ready()
    account = next(iter(fakes.accounts.accounts.values()))
    await send_code(service, fakes, login_id)
    code = await send_code(service, fakes, login_id)
    await refusal(service.login.verify_code(login_id, wrong_code(code), False))
    for _ in range(2):
        await refusal(service.login.check_credentials(credentials(password="nope")))
    before = await service.advisor.get_lock_status(NIR)

    verified = await service.login.verify_code(login_id, code, False)
    replay = await refusal(service.login.verify_code(login_id, code, False))

    assert (before.password_failures, before.code_failures, before.codes_sent_in_window) == (
        2,
        1,
        2,
    )
    assert verified == CodeVerified(
        Authenticated(
            account.account_id, (AuthMethod.PASSWORD, AuthMethod.EMAIL_CODE), fakes.clock.now()
        )
    )
    assert replay.reason is ErrorReason.LOGIN_NOT_FOUND
    after = await service.advisor.get_lock_status(NIR)
    assert (after.password_failures, after.code_failures, after.codes_sent_in_window) == (0, 0, 0)
    assert fakes.devices.devices == {}


@pytest.mark.parametrize(
    ("now", "until"),
    [
        (datetime(2023, 8, 31, 9, 0, tzinfo=UTC), datetime(2024, 2, 29, 9, 0, tzinfo=UTC)),
        (datetime(2022, 8, 31, 9, 0, tzinfo=UTC), datetime(2023, 2, 28, 9, 0, tzinfo=UTC)),
        (datetime(2023, 1, 4, 14, 32, tzinfo=UTC), datetime(2023, 7, 4, 14, 32, tzinfo=UTC)),
    ],
    ids=["leap February", "February", "January"],
)
async def test_trust_device_returns_a_token_valid_six_calendar_months(
    now: datetime, until: datetime
) -> None:
    """Ticking "ordinateur personnel" trusts the device for 6 calendar months, day clamped."""
    service, fakes, login_id = await _ready(now=now)
    code = await send_code(service, fakes, login_id)

    verified = await service.login.verify_code(login_id, code, True)

    assert verified.device_token
    assert len(verified.device_token) >= 43  # 256 random bits, base64url
    assert verified.device_trust_expire_time == until


async def test_only_the_hash_of_the_device_token_is_stored() -> None:
    """The repository holds the token's keyed hash, never the token, and the token then works."""
    service, fakes, login_id = await _ready()
    account = next(iter(fakes.accounts.accounts.values()))
    code = await send_code(service, fakes, login_id)

    verified = await service.login.verify_code(login_id, code, True)

    token = verified.device_token
    assert token is not None
    (device,) = fakes.devices.devices.values()
    assert device.token_hash == fakes.keyring.token_hash(token)
    assert token not in repr(device)
    assert device.account_id == account.account_id
    assert device.expire_time == verified.device_trust_expire_time
    outcome = await service.login.check_credentials(credentials(device_token=token))
    assert isinstance(outcome, Authenticated)
    assert AuthMethod.TRUSTED_DEVICE in outcome.methods


async def test_a_trusted_device_needs_the_code_again_after_six_months() -> None:
    """On the day its trust ends, the device asks for a code again."""
    service, fakes, login_id = await _ready()
    code = await send_code(service, fakes, login_id)
    verified = await service.login.verify_code(login_id, code, True)
    assert verified.device_trust_expire_time is not None

    fakes.clock.set(verified.device_trust_expire_time - timedelta(seconds=1))
    trusted = await service.login.check_credentials(
        credentials(device_token=verified.device_token or "")
    )
    fakes.clock.set(verified.device_trust_expire_time)
    expired = await service.login.check_credentials(
        credentials(device_token=verified.device_token or "")
    )

    assert isinstance(trusted, Authenticated)
    assert not isinstance(expired, Authenticated)


# --- lock precedence ---------------------------------------------------------------------------


class _StoreWithExtraLocks(MemoryChallengeStore):
    """The in-memory store, plus locks that a test imposes (two locks at once are rare)."""

    def __init__(self, *extra: Lock) -> None:
        super().__init__()
        self.extra = extra

    async def active_locks(
        self, nir_ref: str, now: datetime, scopes: frozenset[LockScope]
    ) -> tuple[Lock, ...]:
        own = await super().active_locks(nir_ref, now, scopes)
        return own + self._extra(now)

    async def locks_and_generation(
        self, nir_ref: str, now: datetime
    ) -> tuple[tuple[Lock, ...], str]:
        own, generation = await super().locks_and_generation(nir_ref, now)
        return own + self._extra(now), generation

    async def status(
        self, nir_ref: str, now: datetime, failure_window: timedelta, quota_window: timedelta
    ) -> NirStatus:
        own = await super().status(nir_ref, now, failure_window, quota_window)
        return replace(own, locks=own.locks + self._extra(now))

    def _extra(self, now: datetime) -> tuple[Lock, ...]:
        return tuple(lock for lock in self.extra if lock.expire_time and lock.expire_time > now)


async def test_of_two_locks_the_one_ending_last_is_reported() -> None:
    """A password lock and a longer quota lock: the quota lock's end is the one shown."""
    store = _StoreWithExtraLocks()
    service, fakes = make_service(store=store)
    fakes.add_account()
    for _ in range(3):
        password_lock = await refusal(service.login.check_credentials(credentials(password="nope")))
    later = Lock(LockKind.CODE_QUOTA, fakes.clock.now() + timedelta(minutes=40))
    earlier = Lock(LockKind.CODE_ATTEMPTS, fakes.clock.now() + timedelta(minutes=5))
    store.extra = (earlier, later)

    error = await refusal(service.login.check_credentials(credentials()))
    status = await service.advisor.get_lock_status(NIR)

    assert error.reason is ErrorReason.CODE_QUOTA_EXCEEDED
    assert later.expire_time is not None
    assert error.lock_expire_time == later.expire_time
    assert error.message == Messages.code_quota_exceeded(later.expire_time)
    governing, *others = [view.reason for view in status.locks]
    assert governing is ErrorReason.CODE_QUOTA_EXCEEDED
    assert set(others) == {ErrorReason.PASSWORD_ATTEMPTS_LOCKED, ErrorReason.CODE_ATTEMPTS_LOCKED}
    fakes.clock.advance(minutes=20)  # the password lock is over, the quota lock is not
    assert (await refusal(service.login.check_credentials(credentials()))).reason is (
        ErrorReason.CODE_QUOTA_EXCEEDED
    )
    assert password_lock.reason is ErrorReason.PASSWORD_ATTEMPTS_LOCKED


async def test_the_password_lock_wins_when_it_ends_last() -> None:
    """A password lock over a shorter code lock: the password lock is reported."""
    store = _StoreWithExtraLocks()
    service, fakes = make_service(store=store)
    fakes.add_account()
    for _ in range(3):
        password_lock = await refusal(service.login.check_credentials(credentials(password="nope")))
    store.extra = (Lock(LockKind.CODE_ATTEMPTS, fakes.clock.now() + timedelta(minutes=5)),)

    error = await refusal(service.login.check_credentials(credentials()))

    assert error.reason is ErrorReason.PASSWORD_ATTEMPTS_LOCKED
    assert error.lock_expire_time == password_lock.lock_expire_time


# --- parallel requests -------------------------------------------------------------------------


async def test_forty_parallel_wrong_codes_evaluate_exactly_three() -> None:
    """Forty concurrent wrong codes: exactly three are evaluated, and the third sets the lock."""
    service, fakes, login_id = await _ready()
    code = await send_code(service, fakes, login_id)

    results = await asyncio.gather(
        *(service.login.verify_code(login_id, wrong_code(code), False) for _ in range(40)),
        return_exceptions=True,
    )

    assert all(isinstance(result, AuthError) for result in results)
    errors = [result for result in results if isinstance(result, AuthError)]
    reasons = [error.reason for error in errors]
    assert reasons.count(ErrorReason.INVALID_CODE) == 2
    assert reasons.count(ErrorReason.CODE_ATTEMPTS_LOCKED) == 38
    remaining = [e.attempts_remaining for e in errors if e.reason is ErrorReason.INVALID_CODE]
    assert sorted(left or 0 for left in remaining) == [1, 2]
    assert None not in remaining
    assert len(fakes.audit.of_kind("locked_code")) == 1  # the third evaluated code set the lock
    status = await service.advisor.get_lock_status(NIR)
    assert (status.locked, status.code_failures) == (True, 3)
    (lock,) = status.locks
    assert lock.reason is ErrorReason.CODE_ATTEMPTS_LOCKED
    assert {e.lock_expire_time for e in errors if e.reason is lock.reason} == {lock.expire_time}


async def test_forty_parallel_wrong_passwords_verify_exactly_three() -> None:
    """Forty concurrent wrong passwords cost three argon2 verifies; the third locks the NIR.

    The 37 others arrive while three are in flight and no lock exists yet: they
    are told to retry (ATTEMPT_IN_PROGRESS), never shown a lock that is not set.
    """
    service, fakes = make_service()
    fakes.add_account()

    results = await asyncio.gather(
        *(service.login.check_credentials(credentials(password="nope")) for _ in range(40)),
        return_exceptions=True,
    )

    assert all(isinstance(result, AuthError) for result in results)
    reasons = [result.reason for result in results if isinstance(result, AuthError)]
    assert reasons.count(ErrorReason.INVALID_CREDENTIALS) == 2
    assert reasons.count(ErrorReason.PASSWORD_ATTEMPTS_LOCKED) == 1
    assert reasons.count(ErrorReason.ATTEMPT_IN_PROGRESS) == 37
    waiting = [r for r in results if isinstance(r, AuthError) and r.retry_after is not None]
    assert {(e.reason, e.retry_after, e.lock_expire_time) for e in waiting} == {
        (ErrorReason.ATTEMPT_IN_PROGRESS, timedelta(seconds=1), None)
    }
    assert (fakes.hasher.verify_calls, fakes.hasher.verify_dummy_calls) == (3, 0)
    assert len(fakes.audit.of_kind("locked_password")) == 1
    status = await service.advisor.get_lock_status(NIR)
    assert (status.locked, status.password_failures) == (True, 3)


async def test_thirty_parallel_code_requests_send_exactly_five_mails() -> None:
    """Thirty concurrent RequestCode calls send five mails; the others hit the quota lock."""
    service, fakes, login_id = await _ready()

    results = await asyncio.gather(
        *(service.login.request_code(login_id) for _ in range(30)), return_exceptions=True
    )

    assert len(fakes.mailer.sent) == 5
    refused = [result for result in results if isinstance(result, AuthError)]
    assert len(refused) == 25
    assert {error.reason for error in refused} == {ErrorReason.CODE_QUOTA_EXCEEDED}
    sent = sorted(r.codes_remaining for r in results if not isinstance(r, BaseException))
    assert sent == [0, 1, 2, 3, 4]


async def test_parallel_logins_on_the_mobile_app_all_succeed() -> None:
    """Concurrent right passwords do not trip the lock on each other."""
    service, fakes = make_service()
    fakes.add_account()

    results = await asyncio.gather(
        *(
            service.login.check_credentials(credentials(channel=Channel.MOBILE_APP))
            for _ in range(2)
        ),
        return_exceptions=True,
    )

    assert all(isinstance(result, Authenticated) for result in results)
