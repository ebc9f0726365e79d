"""Account protection beyond the guide: smart lockout, daily limit, ceiling (SPEC §7.2, §7.3)."""

from __future__ import annotations

from datetime import timedelta

from fakes import (
    NIR,
    PASSWORD,
    UNKNOWN_NIR,
    Fakes,
    Service,
    credentials,
    make_service,
    nir_key,
    refusal,
)

from ameli_grpc.domain.errors import ErrorReason
from ameli_grpc.domain.messages import Messages
from ameli_grpc.domain.model import LockScope, TrustedDevice
from ameli_grpc.domain.outcomes import Authenticated, CodeRequired
from ameli_grpc.domain.policy import Policy
from ameli_grpc.domain.tokens import new_token

ADVISOR = "conseiller-3646"
# Spaced beyond the 15-minute window, failures never reach the 15-minute lock.
BEYOND_WINDOW = timedelta(minutes=16)


async def _trusted_device(fakes: Fakes, account_id: str) -> str:
    token = new_token()
    now = fakes.clock.now()
    device = TrustedDevice(fakes.keyring.token_hash(token), account_id, now, now + timedelta(90))
    await fakes.devices.add(device)
    return token


async def _wrong_passwords(service: Service, count: int, token: str = "", nir: str = NIR) -> None:
    for _ in range(count):
        await refusal(
            service.login.check_credentials(credentials(nir, "wrong", device_token=token))
        )


# --- smart lockout (SPEC §7.2) ---------------------------------------------------------------


async def test_an_attackers_lock_does_not_stop_the_owners_trusted_device() -> None:
    """Three unfamiliar failures lock unfamiliar requests only; the trusted device logs in."""
    service, fakes = make_service()
    account = fakes.add_account()
    token = await _trusted_device(fakes, account.account_id)
    await _wrong_passwords(service, 3)

    owner = await service.login.check_credentials(credentials(device_token=token))
    stranger = await refusal(service.login.check_credentials(credentials()))

    assert isinstance(owner, Authenticated)
    assert stranger.reason is ErrorReason.PASSWORD_ATTEMPTS_LOCKED
    (lock,) = (await service.advisor.get_lock_status(NIR)).locks
    assert (lock.reason, lock.scope) == (ErrorReason.PASSWORD_ATTEMPTS_LOCKED, LockScope.UNTRUSTED)


async def test_familiar_failures_lock_only_the_trusted_device() -> None:
    """Three wrong passwords from the trusted device lock it; other requests still get a code."""
    service, fakes = make_service()
    account = fakes.add_account()
    token = await _trusted_device(fakes, account.account_id)
    await _wrong_passwords(service, 3, token)

    familiar = await refusal(service.login.check_credentials(credentials(device_token=token)))
    unfamiliar = await service.login.check_credentials(credentials())

    assert familiar.reason is ErrorReason.PASSWORD_ATTEMPTS_LOCKED
    assert isinstance(unfamiliar, CodeRequired)
    (lock,) = (await service.advisor.get_lock_status(NIR)).locks
    assert lock.scope is LockScope.TRUSTED


async def test_a_device_of_another_account_is_unfamiliar() -> None:
    """An attacker's own trusted device does not make his requests on this NIR familiar."""
    service, fakes = make_service()
    fakes.add_account()
    other = fakes.add_account(UNKNOWN_NIR)
    token = await _trusted_device(fakes, other.account_id)
    await _wrong_passwords(service, 3, token)

    error = await refusal(service.login.check_credentials(credentials()))

    assert error.reason is ErrorReason.PASSWORD_ATTEMPTS_LOCKED


async def test_the_familiarity_lookup_is_made_for_unknown_nirs_too() -> None:
    """With a device token, a NIR without an account costs the same device lookup."""
    service, fakes = make_service()
    account = fakes.add_account()
    token = await _trusted_device(fakes, account.account_id)
    looked_up: list[str] = []
    find = fakes.devices.find

    async def counting_find(token_hash: str) -> TrustedDevice | None:
        looked_up.append(token_hash)
        return await find(token_hash)

    fakes.devices.find = counting_find  # type: ignore[method-assign]
    unknown = UNKNOWN_NIR + nir_key(UNKNOWN_NIR)
    await refusal(service.login.check_credentials(credentials(unknown, device_token=token)))
    await refusal(service.login.check_credentials(credentials(NIR, "wrong", device_token=token)))

    assert looked_up == [fakes.keyring.token_hash(token)] * 2


# --- daily limit and ceiling (SPEC §7.3) -----------------------------------------------------


async def test_the_daily_limit_locks_for_a_day() -> None:
    """Failures spread beyond the window reach the daily limit: locked until a day later."""
    service, fakes = make_service(Policy(daily_failure_limit=4, max_consecutive_failures=100))
    fakes.add_account()
    for _ in range(3):
        await _wrong_passwords(service, 1)
        fakes.clock.advance(BEYOND_WINDOW)

    error = await refusal(service.login.check_credentials(credentials(password="wrong")))

    until = fakes.clock.now() + timedelta(hours=24)
    assert error.reason is ErrorReason.PASSWORD_ATTEMPTS_LOCKED
    assert error.lock_expire_time == until
    assert error.message == Messages.password_attempts_locked(until)
    fakes.clock.advance(hours=23, minutes=59)
    assert (await refusal(service.login.check_credentials(credentials()))).lock_expire_time == until
    fakes.clock.advance(minutes=1)
    assert isinstance(await service.login.check_credentials(credentials()), CodeRequired)


async def test_the_ceiling_suspends_until_an_advisor_unlocks() -> None:
    """Consecutive failures reach the ceiling: ACCOUNT_SUSPENDED, with no end, until unlocked."""
    service, fakes = make_service(Policy(max_consecutive_failures=5))
    fakes.add_account()
    for _ in range(4):
        await _wrong_passwords(service, 1)
        fakes.clock.advance(BEYOND_WINDOW)

    reached = await refusal(service.login.check_credentials(credentials(password="wrong")))
    fakes.clock.advance(days=30)
    right = await refusal(service.login.check_credentials(credentials(password=PASSWORD)))

    for error in (reached, right):
        assert error.reason is ErrorReason.ACCOUNT_SUSPENDED
        assert error.message == Messages.ACCOUNT_SUSPENDED
        assert error.lock_expire_time is None
        assert error.retry_after is None
    status = await service.advisor.get_lock_status(NIR)
    (lock,) = status.locks
    assert (status.locked, lock.reason, lock.expire_time) == (
        True,
        ErrorReason.ACCOUNT_SUSPENDED,
        None,
    )
    (event,) = fakes.audit.of_kind("suspended")
    assert event.detail == "scope=untrusted"
    await service.advisor.unlock_account(NIR, ADVISOR, "appel de l'assuré")
    assert isinstance(await service.login.check_credentials(credentials()), CodeRequired)


async def test_an_unknown_nir_is_suspended_alike() -> None:
    """A NIR without an account reaches the ceiling like any other: nothing tells them apart."""
    service, _ = make_service(Policy(max_consecutive_failures=3, max_password_failures=10))
    unknown = UNKNOWN_NIR + nir_key(UNKNOWN_NIR)

    errors = [
        await refusal(service.login.check_credentials(credentials(unknown, "wrong")))
        for _ in range(4)
    ]

    assert [error.reason for error in errors] == [
        ErrorReason.INVALID_CREDENTIALS,
        ErrorReason.INVALID_CREDENTIALS,
        ErrorReason.ACCOUNT_SUSPENDED,
        ErrorReason.ACCOUNT_SUSPENDED,
    ]


async def test_wrong_codes_count_toward_the_ceiling_with_passwords() -> None:
    """Passwords and codes together reach the ceiling of the unfamiliar scope."""
    service, fakes = make_service(Policy(max_consecutive_failures=3))
    fakes.add_account()
    await _wrong_passwords(service, 1)
    outcome = await service.login.check_credentials(credentials())
    assert isinstance(outcome, CodeRequired)
    await service.login.request_code(outcome.login_id)
    code = fakes.mailer.last_code
    wrong_code = f"{(int(code) + 1) % 10**6:06d}"

    first = await refusal(service.login.verify_code(outcome.login_id, wrong_code, False))
    second = await refusal(service.login.verify_code(outcome.login_id, wrong_code, False))

    assert first.reason is ErrorReason.INVALID_CODE
    assert second.reason is ErrorReason.ACCOUNT_SUSPENDED
    assert (await refusal(service.login.check_credentials(credentials()))).reason is (
        ErrorReason.ACCOUNT_SUSPENDED
    )


async def test_a_successful_login_restarts_the_ceiling() -> None:
    """The ceiling counts failures since the last successful login of that scope."""
    service, fakes = make_service(Policy(max_consecutive_failures=3))
    account = fakes.add_account()
    token = await _trusted_device(fakes, account.account_id)
    await _wrong_passwords(service, 2, token)
    assert isinstance(
        await service.login.check_credentials(credentials(device_token=token)), Authenticated
    )

    await _wrong_passwords(service, 2, token)

    assert isinstance(
        await service.login.check_credentials(credentials(device_token=token)), Authenticated
    )
