"""The advisor's calls: GetLockStatus, and ResetAccount with its provisional code."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from fakes import (
    NIR,
    PHONE,
    UNKNOWN_NIR,
    Fakes,
    Service,
    credentials,
    make_service,
    nir_key,
    refusal,
    send_code,
    start_login,
    wrong_code,
)

from ameli_grpc.domain.errors import AuthError, DependencyUnavailable, ErrorReason
from ameli_grpc.domain.messages import Messages
from ameli_grpc.domain.model import Affiliation, Channel
from ameli_grpc.domain.outcomes import AccountSetupRequired, Authenticated, CodeVerified, LockStatus
from ameli_grpc.domain.policy import Policy

ADVISOR = "advisor-3646-042"
REASON = "l'assuré n'a plus accès à sa messagerie"


def _numbers(status: LockStatus) -> tuple[bool, int, int, int]:
    return (
        status.locked,
        status.password_failures,
        status.code_failures,
        status.codes_sent_in_window,
    )


async def _wrong_passwords(service: Service, count: int, nir: str = NIR) -> None:
    for _ in range(count):
        await refusal(service.login.check_credentials(credentials(nir, "wrong password")))


# --- GetLockStatus ---------------------------------------------------------------------------


async def test_lock_status_of_a_quiet_nir_is_all_zero() -> None:
    """A NIR with no history, known or not, is unlocked with nothing counted."""
    service, fakes = make_service()
    fakes.add_account()

    for nir in (NIR, UNKNOWN_NIR + nir_key(UNKNOWN_NIR)):
        status = await service.advisor.get_lock_status(nir)
        assert _numbers(status) == (False, 0, 0, 0)
        assert status.locks == ()


async def test_lock_status_counts_failures_and_codes_without_counting_itself() -> None:
    """The advisor sees wrong passwords, wrong codes and codes sent; looking changes nothing."""
    service, fakes = make_service()
    fakes.add_account()
    login_id = await start_login(service)
    code = await send_code(service, fakes, login_id)
    await refusal(service.login.verify_code(login_id, wrong_code(code), False))
    await _wrong_passwords(service, 2)

    first = await service.advisor.get_lock_status(NIR)
    second = await service.advisor.get_lock_status(NIR)

    assert _numbers(first) == _numbers(second) == (False, 2, 1, 1)


async def test_lock_status_shows_the_password_lock_with_its_message() -> None:
    """After three wrong passwords the advisor sees the lock, its end and the insured's text."""
    service, fakes = make_service()
    fakes.add_account()
    await _wrong_passwords(service, 3)

    status = await service.advisor.get_lock_status(NIR)

    assert _numbers(status) == (True, 3, 0, 0)
    (view,) = status.locks
    assert view.reason is ErrorReason.PASSWORD_ATTEMPTS_LOCKED
    assert view.expire_time == fakes.clock.now() + timedelta(minutes=15)
    assert view.message == Messages.password_attempts_locked(view.expire_time)
    assert "mercredi 4 janvier 2023 15:47" in view.message


async def test_lock_status_shows_the_code_and_quota_locks() -> None:
    """The code lock and the quota lock appear with their reasons and texts."""
    service, fakes = make_service()
    fakes.add_account()
    login_id = await start_login(service)
    for _ in range(5):
        await service.login.request_code(login_id)
    await refusal(service.login.request_code(login_id))
    quota = await service.advisor.get_lock_status(NIR)

    service, fakes = make_service()
    fakes.add_account()
    login_id = await start_login(service)
    code = await send_code(service, fakes, login_id)
    for _ in range(3):
        await refusal(service.login.verify_code(login_id, wrong_code(code), False))
    codes = await service.advisor.get_lock_status(NIR)

    (quota_view,) = quota.locks
    assert quota_view.reason is ErrorReason.CODE_QUOTA_EXCEEDED
    assert quota_view.expire_time == fakes.clock.now() + timedelta(hours=1)
    assert quota_view.message == Messages.code_quota_exceeded(quota_view.expire_time)
    assert quota.codes_sent_in_window == 5
    (code_view,) = codes.locks
    assert code_view.reason is ErrorReason.CODE_ATTEMPTS_LOCKED
    assert code_view.expire_time is not None
    assert code_view.message == Messages.code_attempts_locked(code_view.expire_time)
    assert codes.code_failures == 3


async def test_lock_status_forgets_what_left_its_window() -> None:
    """Once the lock has ended and the window has passed, the status is clean again."""
    service, fakes = make_service()
    fakes.add_account()
    await _wrong_passwords(service, 3)
    fakes.clock.advance(minutes=14, seconds=59)
    assert (await service.advisor.get_lock_status(NIR)).locked

    fakes.clock.advance(seconds=1)

    assert _numbers(await service.advisor.get_lock_status(NIR)) == (False, 0, 0, 0)


async def test_lock_status_of_an_invalid_nir_is_invalid_nir() -> None:
    """The advisor's typo is INVALID_NIR, not an empty status."""
    service, _ = make_service()

    error = await refusal(service.advisor.get_lock_status(NIR + "00"))

    assert error.reason is ErrorReason.INVALID_NIR


# --- ResetAccount ----------------------------------------------------------------------------


async def _busy_account(service: Service, fakes: Fakes) -> tuple[str, str]:
    """A trusted device, a pending login with codes and failures, and a password lock."""
    login_id = await start_login(service)
    code = await send_code(service, fakes, login_id)
    verified = await service.login.verify_code(login_id, code, True)
    assert isinstance(verified, CodeVerified)
    assert verified.device_token
    pending = await start_login(service)
    code = await send_code(service, fakes, pending)
    await refusal(service.login.verify_code(pending, wrong_code(code), False))
    await _wrong_passwords(service, 3)
    return verified.device_token, pending


async def test_reset_deletes_the_account_its_devices_locks_counters_and_quota() -> None:
    """After the advisor's reset the NIR has no account, no device, no lock and nothing counted."""
    service, fakes = make_service()
    fakes.add_account()
    _, pending = await _busy_account(service, fakes)
    assert _numbers(await service.advisor.get_lock_status(NIR)) == (True, 3, 1, 1)

    reset = await service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=False)

    assert reset.reset_time == fakes.clock.now()
    assert (reset.provisional_code_sent, reset.masked_phone) == (False, "")
    assert reset.provisional_code_expire_time is None
    assert fakes.accounts.accounts == {}
    assert fakes.devices.devices == {}
    assert _numbers(await service.advisor.get_lock_status(NIR)) == (False, 0, 0, 0)
    assert (await refusal(service.login.verify_code(pending, "000000", False))).reason is (
        ErrorReason.LOGIN_NOT_FOUND
    )
    old_password = await refusal(service.login.check_credentials(credentials()))
    assert old_password.reason is ErrorReason.INVALID_CREDENTIALS
    assert old_password.attempts_remaining == 2
    assert fakes.sms.attempts == []


async def test_reset_is_audited_with_the_advisor_and_without_the_nir() -> None:
    """The audit line names the advisor, the account and the NIR's keyed hash, never the NIR."""
    service, fakes = make_service()
    account = fakes.add_account()

    await service.advisor.reset_account(
        NIR + nir_key(NIR), ADVISOR, REASON, send_provisional_code=True
    )

    (event,) = fakes.audit.of_kind("account_reset")
    assert event.advisor_id == ADVISOR
    assert event.reason == REASON
    assert event.account_id == account.account_id
    assert event.nir_ref == fakes.nir_ref()
    assert event.occurred_time == fakes.clock.now()
    assert event.reason == REASON  # its own column, not folded into the detail
    assert event.detail == "provisional_code_stored=True"
    (sent,) = fakes.audit.of_kind("provisional_code_sent")  # after the commit, its own row
    assert (sent.advisor_id, sent.account_id, sent.nir_ref) == (
        ADVISOR,
        account.account_id,
        fakes.nir_ref(),
    )
    for logged in fakes.audit.events:
        assert NIR not in repr(logged)
        assert fakes.sms.last_code not in repr(logged)


async def test_reset_sends_a_provisional_code_by_sms_when_asked() -> None:
    """Asked to, the reset texts a provisional code valid one hour to the phone on file."""
    service, fakes = make_service()
    fakes.add_account(mobile_phone=PHONE)

    reset = await service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=True)

    (sms,) = fakes.sms.sent
    assert (sms.to, sms.valid_minutes) == (PHONE, 60)
    assert sms.code
    assert reset.provisional_code_sent is True
    assert reset.masked_phone == "06******78"
    assert reset.provisional_code_expire_time == fakes.clock.now() + timedelta(hours=1)
    (stored,) = fakes.provisional_codes.codes.values()
    assert stored.code_hash == "fake$" + sms.code  # the hasher's output, never the code itself
    assert stored.expire_time == reset.provisional_code_expire_time


async def test_the_provisional_code_lifetime_follows_the_configuration() -> None:
    """With provisional_code_ttl at 30 minutes, the SMS and the expiry say 30 minutes."""
    service, fakes = make_service(Policy(provisional_code_ttl=timedelta(minutes=30)))
    fakes.add_account()

    reset = await service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=True)

    assert fakes.sms.sent[0].valid_minutes == 30
    assert reset.provisional_code_expire_time == fakes.clock.now() + timedelta(minutes=30)


@pytest.mark.parametrize(
    ("asked", "phone"),
    [(False, PHONE), (True, None), (True, ""), (True, "01 23 45 67 89"), (True, "n/a")],
    ids=["not asked", "no phone", "empty phone", "landline on file", "garbage on file"],
)
async def test_no_sms_unless_asked_and_a_phone_is_on_file(asked: bool, phone: str | None) -> None:
    """Without the advisor's request or a mobile on file (a landline or garbage stored before
    the import checked phones is none), no provisional code exists; the reset still happens."""
    service, fakes = make_service()
    fakes.add_account(mobile_phone=phone)

    reset = await service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=asked)

    assert reset.provisional_code_sent is False
    assert reset.masked_phone == ""
    assert fakes.sms.attempts == []
    assert fakes.provisional_codes.codes == {}
    assert fakes.accounts.accounts == {}


async def test_a_failing_sms_withdraws_the_provisional_code() -> None:
    """If the SMS cannot be sent the reset stands, but the code that was not sent is useless."""
    service, fakes = make_service()
    fakes.add_account()
    fakes.sms.fail()

    reset = await service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=True)

    assert reset.provisional_code_sent is False
    assert fakes.accounts.accounts == {}
    assert fakes.provisional_codes.codes == {}
    unsent = fakes.sms.attempts[-1].code
    error = await refusal(service.login.check_credentials(credentials(password=unsent)))
    assert error.reason is ErrorReason.INVALID_CREDENTIALS
    (event,) = fakes.audit.of_kind("account_reset")
    assert event.detail == "provisional_code_stored=True"
    (withdrawn,) = fakes.audit.of_kind("provisional_code_withdrawn")
    assert withdrawn.detail == "sms_failed"
    assert fakes.audit.of_kind("provisional_code_sent") == []


async def test_a_reset_whose_transaction_fails_resets_nothing() -> None:
    """If the reset's transaction fails, nothing is deleted, stored, audited, unlocked or sent;
    only the logins under way are ended (the person logs in again)."""
    service, fakes = make_service()
    account = fakes.add_account()
    device_token, pending = await _busy_account(service, fakes)
    devices_before = dict(fakes.devices.devices)
    status_before = _numbers(await service.advisor.get_lock_status(NIR))
    audit_before = list(fakes.audit.events)
    fakes.accounts.reset_failure = DependencyUnavailable("database", "down")

    with pytest.raises(DependencyUnavailable):
        await service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=True)

    assert fakes.accounts.accounts == {account.account_id: account}
    assert fakes.devices.devices == devices_before
    assert fakes.keyring.token_hash(device_token) in fakes.devices.devices
    assert _numbers(await service.advisor.get_lock_status(NIR)) == status_before == (True, 3, 1, 1)
    assert fakes.audit.events == audit_before
    assert fakes.audit.of_kind("account_reset") == []
    assert fakes.provisional_codes.codes == {}
    assert fakes.sms.attempts == []
    ended = await refusal(service.login.verify_code(pending, "000000", False))
    assert ended.reason is ErrorReason.LOGIN_NOT_FOUND


async def test_the_provisional_code_works_once_in_the_password_field() -> None:
    """The provisional code opens account setup once; a second use is a wrong password."""
    service, fakes = make_service()
    fakes.add_account()
    await service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=True)
    provisional = fakes.sms.last_code

    first = await service.login.check_credentials(credentials(password=provisional))
    second = await refusal(service.login.check_credentials(credentials(password=provisional)))

    assert isinstance(first, AccountSetupRequired)
    assert len(first.setup_token) >= 43
    assert fakes.mailer.attempts == []
    assert len(fakes.audit.of_kind("provisional_code_used")) == 1
    assert second.reason is ErrorReason.INVALID_CREDENTIALS
    assert second.message == Messages.wrong_entry(3)
    assert second.attempts_remaining == 2


async def test_two_logins_racing_with_the_provisional_code_redeem_it_once() -> None:
    """Both verify the code; one redeems it, the other is a wrong entry that counts nothing
    and says so (every attempt left), like any wrong entry of case 4."""
    service, fakes = make_service()
    fakes.add_account()
    await service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=True)
    request = credentials(password=fakes.sms.last_code)

    outcomes = await asyncio.gather(
        service.login.check_credentials(request),
        service.login.check_credentials(request),
        return_exceptions=True,
    )

    (won,) = [outcome for outcome in outcomes if isinstance(outcome, AccountSetupRequired)]
    (lost,) = [outcome for outcome in outcomes if isinstance(outcome, AuthError)]
    assert len(won.setup_token) >= 43
    assert lost.reason is ErrorReason.INVALID_CREDENTIALS
    assert lost.message == Messages.wrong_entry(3)
    assert lost.attempts_remaining == 3
    assert len(fakes.provisional_codes.setups) == 1
    assert len(fakes.audit.of_kind("provisional_code_used")) == 1
    assert fakes.audit.of_kind("password_failed") == []


async def test_the_provisional_code_comes_before_channel_and_rfi() -> None:
    """On the mobile app too, and before any registry lookup, the code leads to account setup."""
    service, fakes = make_service()
    fakes.add_account()
    fakes.registry.affiliations[NIR] = Affiliation.PENDING
    await service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=True)

    outcome = await service.login.check_credentials(
        credentials(password=fakes.sms.last_code, channel=Channel.MOBILE_APP)
    )

    assert isinstance(outcome, AccountSetupRequired)
    assert fakes.registry.lookups == []


async def test_an_expired_provisional_code_is_a_wrong_password() -> None:
    """An hour after the reset the provisional code is a wrong password; just before, it works."""
    service, fakes = make_service()
    fakes.add_account()
    await service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=True)
    provisional = fakes.sms.last_code
    fakes.clock.advance(hours=1)

    error = await refusal(service.login.check_credentials(credentials(password=provisional)))

    assert error.reason is ErrorReason.INVALID_CREDENTIALS
    fakes.clock.advance(seconds=-1)
    assert isinstance(
        await service.login.check_credentials(credentials(password=provisional)),
        AccountSetupRequired,
    )


async def test_wrong_passwords_lock_a_nir_waiting_for_its_provisional_code() -> None:
    """Three wrong entries lock the NIR; then even the provisional code gets the lock."""
    service, fakes = make_service()
    fakes.add_account()
    await service.advisor.reset_account(NIR, ADVISOR, REASON, send_provisional_code=True)
    await _wrong_passwords(service, 3)

    error = await refusal(
        service.login.check_credentials(credentials(password=fakes.sms.last_code))
    )

    assert error.reason is ErrorReason.PASSWORD_ATTEMPTS_LOCKED


async def test_reset_of_a_nir_without_account_is_account_not_found() -> None:
    """Resetting a NIR that has no account is ACCOUNT_NOT_FOUND and changes nothing."""
    service, fakes = make_service()
    fakes.add_account()

    error = await refusal(
        service.advisor.reset_account(UNKNOWN_NIR, ADVISOR, REASON, send_provisional_code=True)
    )

    assert error.reason is ErrorReason.ACCOUNT_NOT_FOUND
    assert error.message == "Aucun compte ameli pour ce numéro de sécurité sociale."
    assert fakes.sms.attempts == []
    assert fakes.audit.events == []
    assert len(fakes.accounts.accounts) == 1


async def test_a_reset_with_an_invalid_nir_is_invalid_nir() -> None:
    """A mistyped NIR is INVALID_NIR and deletes nothing."""
    service, fakes = make_service()
    fakes.add_account()

    error = await refusal(service.advisor.reset_account(NIR[:-1], ADVISOR, REASON, True))

    assert error.reason is ErrorReason.INVALID_NIR
    assert len(fakes.accounts.accounts) == 1


# --- UnlockAccount ---------------------------------------------------------------------------


async def test_unlock_lifts_locks_counters_and_quota_and_keeps_the_account() -> None:
    """UnlockAccount clears every lock and counter; the account, its device and logins stay."""
    service, fakes = make_service()
    account = fakes.add_account()
    token, pending = await _busy_account(service, fakes)
    assert _numbers(await service.advisor.get_lock_status(NIR)) == (True, 3, 1, 1)

    unlocked = await service.advisor.unlock_account(NIR, ADVISOR, REASON)

    assert unlocked.unlock_time == fakes.clock.now()
    assert unlocked.locks_cleared == 1
    assert _numbers(await service.advisor.get_lock_status(NIR)) == (False, 0, 0, 0)
    assert await fakes.accounts.get(account.account_id) == account
    trusted = await service.login.check_credentials(credentials(device_token=token))
    assert isinstance(trusted, Authenticated)
    assert trusted.account_id == account.account_id
    assert (await service.login.request_code(pending)).codes_remaining == 4  # the login goes on


async def test_unlock_is_audited_with_the_advisor_reason_and_count() -> None:
    """The audit row names the advisor, the account, the reason and how many locks were lifted."""
    service, fakes = make_service()
    account = fakes.add_account()
    await _wrong_passwords(service, 3)

    await service.advisor.unlock_account(NIR, ADVISOR, REASON)

    (event,) = fakes.audit.of_kind("account_unlocked")
    assert (event.nir_ref, event.account_id, event.advisor_id) == (
        fakes.nir_ref(),
        account.account_id,
        ADVISOR,
    )
    assert event.reason == REASON
    assert event.detail == "locks_cleared=1"


async def test_unlock_works_for_a_nir_without_an_account() -> None:
    """A NIR without an account is locked like any other; the advisor can unlock it too."""
    service, fakes = make_service()
    unknown = UNKNOWN_NIR + nir_key(UNKNOWN_NIR)
    await _wrong_passwords(service, 3, unknown)

    unlocked = await service.advisor.unlock_account(unknown, ADVISOR, REASON)

    assert unlocked.locks_cleared == 1
    assert _numbers(await service.advisor.get_lock_status(unknown)) == (False, 0, 0, 0)
    (event,) = fakes.audit.of_kind("account_unlocked")
    assert event.account_id is None
