"""The advisor's view of an account (GetAccount) and the revocation of its trusted devices."""

from __future__ import annotations

from datetime import timedelta

import pytest
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
    send_code,
    start_login,
    wrong_code,
)

from ameli_grpc.domain.errors import AuthError, DependencyUnavailable, ErrorReason
from ameli_grpc.domain.model import Affiliation, Channel, LockScope, TrustedDevice
from ameli_grpc.domain.outcomes import Authenticated, CodeRequired, CodeVerified
from ameli_grpc.domain.policy import Policy
from ameli_grpc.domain.tokens import new_token

ADVISOR = "advisor-3646-042"
REASON = "ordinateur partagé avec un tiers"
# Spaced beyond the 15-minute window, failures never reach the 15-minute lock.
BEYOND_WINDOW = timedelta(minutes=16)


async def _trust_this_computer(service: Service, fakes: Fakes) -> str:
    """The whole login with "ordinateur personnel" ticked: the device token it returns."""
    login_id = await start_login(service)
    verified = await service.login.verify_code(
        login_id, await send_code(service, fakes, login_id), True
    )
    assert isinstance(verified, CodeVerified)
    assert verified.device_token
    return verified.device_token


async def _device_of(fakes: Fakes, account_id: str, *, expire_in: timedelta) -> str:
    """A device of the account trusted now until ``expire_in`` from now: its token."""
    token, now = new_token(), fakes.clock.now()
    await fakes.devices.add(
        TrustedDevice(fakes.keyring.token_hash(token), account_id, now, now + expire_in)
    )
    return token


async def _wrong_passwords(service: Service, count: int, token: str = "") -> None:
    for _ in range(count):
        await refusal(
            service.login.check_credentials(credentials(NIR, "wrong", device_token=token))
        )


# --- GetAccount ------------------------------------------------------------------------------


async def test_the_advisor_sees_masked_contacts_rfi_and_the_devices_still_trusted() -> None:
    """Masked email and phone, validation, affiliation, and the valid devices with their use."""
    service, fakes = make_service()
    account = fakes.add_account(email="toto@test.com", mobile_phone="+33 6 12 34 56 78")
    used = await _trust_this_computer(service, fakes)
    trusted_time = fakes.clock.now()
    fakes.clock.advance(days=1)
    await _trust_this_computer(service, fakes)  # a second computer, never used since
    await _device_of(fakes, account.account_id, expire_in=timedelta(seconds=30))  # about to end
    fakes.clock.advance(days=2)
    assert isinstance(
        await service.login.check_credentials(credentials(device_token=used)), Authenticated
    )
    fakes.registry.affiliations[NIR] = Affiliation.PENDING  # the RFI's answer has changed

    details = await service.advisor.get_account(NIR + nir_key(NIR))

    assert (details.masked_email, details.email_validated) == ("t***@t***.com", True)
    assert details.masked_phone == "06******78"
    assert details.affiliation is Affiliation.PENDING
    first, second = details.trusted_devices
    assert (first.create_time, first.last_use_time) == (trusted_time, fakes.clock.now())
    assert first.expire_time == trusted_time.replace(month=7)  # six calendar months
    assert (second.create_time, second.last_use_time) == (trusted_time + timedelta(days=1), None)
    for shown in details.trusted_devices:
        assert "token" not in repr(shown)  # neither the token nor its hash


async def test_an_account_without_contacts_shows_empty_masks() -> None:
    """No email, no phone: empty masked fields, the email not validated, no device."""
    service, fakes = make_service()
    fakes.add_account(email=None, email_validated=False, mobile_phone=None)

    details = await service.advisor.get_account(NIR)

    assert (details.masked_email, details.email_validated, details.masked_phone) == ("", False, "")
    assert details.trusted_devices == ()
    assert details.affiliation is Affiliation.AFFILIATED


async def test_the_locks_and_counters_are_those_of_the_lock_status() -> None:
    """The suspension first, then the trusted devices' lock, each with its scope; suspended."""
    service, fakes = make_service(Policy(max_consecutive_failures=5))
    account = fakes.add_account()
    token = await _device_of(fakes, account.account_id, expire_in=timedelta(days=90))
    for _ in range(4):
        await _wrong_passwords(service, 1)
        fakes.clock.advance(BEYOND_WINDOW)
    await _wrong_passwords(service, 3, token)  # the owner's computer: its own lock
    await _wrong_passwords(service, 1)  # the fifth unfamiliar failure: suspended

    details = await service.advisor.get_account(NIR)

    status = await service.advisor.get_lock_status(NIR)
    assert details.lock_status == status
    assert [(view.reason, view.scope) for view in status.locks] == [
        (ErrorReason.ACCOUNT_SUSPENDED, LockScope.UNTRUSTED),
        (ErrorReason.PASSWORD_ATTEMPTS_LOCKED, LockScope.TRUSTED),
    ]
    assert details.lock_status.suspended is True
    assert details.lock_status.password_failures == status.password_failures > 0


async def test_a_password_lock_alone_is_not_a_suspension() -> None:
    """Three wrong passwords lock the NIR for a while: locked, with counters, not suspended."""
    service, fakes = make_service()
    fakes.add_account()
    login_id = await start_login(service)
    code = await send_code(service, fakes, login_id)
    await refusal(service.login.verify_code(login_id, wrong_code(code), False))
    await _wrong_passwords(service, 3)

    status = (await service.advisor.get_account(NIR)).lock_status

    assert (status.locked, status.suspended) == (True, False)
    assert (status.password_failures, status.code_failures, status.codes_sent_in_window) == (
        3,
        1,
        1,
    )


async def test_get_account_of_a_nir_without_account_is_account_not_found() -> None:
    """No account for that NIR: ACCOUNT_NOT_FOUND and its French text, no RFI lookup."""
    service, fakes = make_service()
    fakes.add_account()

    error = await refusal(service.advisor.get_account(UNKNOWN_NIR))

    assert error.reason is ErrorReason.ACCOUNT_NOT_FOUND
    assert error.message == "Aucun compte ameli pour ce numéro de sécurité sociale."
    assert fakes.registry.lookups == []


async def test_get_account_of_an_invalid_nir_is_invalid_nir() -> None:
    """A mistyped NIR is INVALID_NIR, not ACCOUNT_NOT_FOUND."""
    service, fakes = make_service()
    fakes.add_account()

    error = await refusal(service.advisor.get_account(NIR[:-1]))

    assert error.reason is ErrorReason.INVALID_NIR


async def test_an_rfi_outage_is_unavailable_rather_than_a_guess() -> None:
    """When the RFI cannot answer, GetAccount fails rather than show a made-up affiliation."""
    service, fakes = make_service()
    fakes.add_account()
    fakes.registry.failure = DependencyUnavailable("rfi", "timeout")

    with pytest.raises(DependencyUnavailable):
        await service.advisor.get_account(NIR)


# --- last use of a trusted device ------------------------------------------------------------


async def test_a_login_spared_its_code_records_the_devices_last_use() -> None:
    """Each login the device spares its code moves the device's last use to that login."""
    service, fakes = make_service()
    fakes.add_account()
    token = await _trust_this_computer(service, fakes)
    token_hash = fakes.keyring.token_hash(token)
    assert fakes.devices.devices[token_hash].last_use_time is None

    for _ in range(2):
        fakes.clock.advance(hours=1)
        await service.login.check_credentials(credentials(device_token=token))
        assert fakes.devices.devices[token_hash].last_use_time == fakes.clock.now()


@pytest.mark.parametrize(
    ("channel", "password", "answer"),
    [
        (Channel.MOBILE_APP, PASSWORD, "Authenticated"),
        (Channel.FRANCECONNECT, PASSWORD, "CodeRequired"),
        (Channel.WEB, "wrong", "INVALID_CREDENTIALS"),
    ],
    ids=["mobile app (no code anyway)", "franceconnect (code due)", "wrong password"],
)
async def test_a_login_the_device_did_not_spare_leaves_its_last_use(
    channel: Channel, password: str, answer: str
) -> None:
    """Only a login that skipped the code thanks to the device counts as its use."""
    service, fakes = make_service()
    fakes.add_account()
    token = await _trust_this_computer(service, fakes)

    try:
        outcome = await service.login.check_credentials(
            credentials(password=password, channel=channel, device_token=token)
        )
        got = type(outcome).__name__
    except AuthError as error:
        got = error.reason.value

    assert got == answer
    (device,) = fakes.devices.devices.values()
    assert device.last_use_time is None


# --- RevokeTrustedDevices --------------------------------------------------------------------


async def test_revocation_untrusts_every_device_and_keeps_the_account() -> None:
    """After the revocation the old computer needs the code again; the account stays."""
    service, fakes = make_service()
    account = fakes.add_account()
    other = fakes.add_account(UNKNOWN_NIR)
    token = await _trust_this_computer(service, fakes)
    await _trust_this_computer(service, fakes)
    await _device_of(fakes, account.account_id, expire_in=timedelta(seconds=1))
    others_token = await _device_of(fakes, other.account_id, expire_in=timedelta(days=90))
    fakes.clock.advance(seconds=1)  # that third device has just ended: not counted

    revoked = await service.advisor.revoke_trusted_devices(NIR, ADVISOR, REASON)

    assert (revoked.revoke_time, revoked.revoked_count) == (fakes.clock.now(), 2)
    assert await fakes.accounts.get(account.account_id) == account
    assert list(fakes.devices.devices) == [fakes.keyring.token_hash(others_token)]
    assert isinstance(
        await service.login.check_credentials(credentials(device_token=token)), CodeRequired
    )
    assert (await service.advisor.get_account(NIR)).trusted_devices == ()


async def test_revocation_is_audited_with_advisor_reason_and_count() -> None:
    """One ``devices_revoked`` row: advisor, reason, account, NIR's keyed hash, never the NIR."""
    service, fakes = make_service()
    account = fakes.add_account()
    await _trust_this_computer(service, fakes)

    await service.advisor.revoke_trusted_devices(NIR, ADVISOR, REASON)
    again = await service.advisor.revoke_trusted_devices(NIR, ADVISOR, REASON)

    assert again.revoked_count == 0  # nothing left to revoke, still audited
    first, second = fakes.audit.of_kind("devices_revoked")
    assert (first.advisor_id, first.reason, first.account_id, first.nir_ref) == (
        ADVISOR,
        REASON,
        account.account_id,
        fakes.nir_ref(),
    )
    assert (first.detail, second.detail) == ("revoked_count=1", "revoked_count=0")
    assert first.occurred_time == fakes.clock.now()
    assert NIR not in repr(fakes.audit.events)


async def test_revocation_of_a_nir_without_account_is_account_not_found() -> None:
    """No account: ACCOUNT_NOT_FOUND, nothing deleted, nothing audited."""
    service, fakes = make_service()
    account = fakes.add_account()
    await _device_of(fakes, account.account_id, expire_in=timedelta(days=90))

    error = await refusal(service.advisor.revoke_trusted_devices(UNKNOWN_NIR, ADVISOR, REASON))

    assert error.reason is ErrorReason.ACCOUNT_NOT_FOUND
    assert len(fakes.devices.devices) == 1
    assert fakes.audit.of_kind("devices_revoked") == []


@pytest.mark.parametrize(
    ("nir", "advisor_id", "reason", "expected"),
    [
        (NIR, "", REASON, ErrorReason.INVALID_REQUEST),
        (NIR, "a" * 65, REASON, ErrorReason.INVALID_REQUEST),
        (NIR, ADVISOR, "motif\x00", ErrorReason.INVALID_REQUEST),
        (NIR, ADVISOR, "r" * 501, ErrorReason.INVALID_REQUEST),
        (NIR[:-1], ADVISOR, REASON, ErrorReason.INVALID_NIR),
    ],
    ids=["no advisor", "65 chars", "NUL reason", "501 chars", "invalid NIR"],
)
async def test_a_bad_revocation_request_changes_nothing(
    nir: str, advisor_id: str, reason: str, expected: ErrorReason
) -> None:
    """A bad NIR, advisor id or reason is refused before any device is touched."""
    service, fakes = make_service()
    fakes.add_account()
    token = await _trust_this_computer(service, fakes)

    error = await refusal(service.advisor.revoke_trusted_devices(nir, advisor_id, reason))

    assert error.reason is expected
    assert fakes.keyring.token_hash(token) in fakes.devices.devices
    assert fakes.audit.of_kind("devices_revoked") == []
