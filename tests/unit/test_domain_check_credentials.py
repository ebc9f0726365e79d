"""CheckCredentials, SPEC §2 steps 1 to 8, in their order."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from fakes import (
    EMAIL,
    NIR,
    OTHER_NIR,
    PASSWORD,
    UNKNOWN_NIR,
    FakePasswordHasher,
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
from ameli_grpc.domain.model import Affiliation, AuthMethod, Channel, TrustedDevice
from ameli_grpc.domain.outcomes import Authenticated, CodeRequired
from ameli_grpc.domain.policy import Policy
from ameli_grpc.domain.tokens import new_token

WRONG_ENTRY = (
    "Les informations saisies sont erronées. Merci de vérifier votre saisie. "
    "Attention : 3 essais infructueux bloquent l'accès au service."
)
PASSWORD_LOCK_1547 = (
    "Pour des raisons de sécurité, l'accès à votre compte ameli est bloqué jusqu'au "
    "mercredi 4 janvier 2023 15:47 (heure de Paris). Si vous n'êtes pas sûr de votre mot "
    "de passe, cliquez sur le lien « Mot de passe oublié ? » ci-dessous."
)
CORSICA_2A = "163022A123456"
CORSICA_2B = "271122B987654"


def _spaced(nir: str) -> str:
    return f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:7]} {nir[7:10]} {nir[10:13]} {nir[13:]}".strip()


# --- step 1: the NIR -----------------------------------------------------------------------

INVALID_NIRS = {
    "12 characters": NIR[:12],
    "14 characters": NIR + "9",
    "15 with a wrong key": NIR + f"{(int(nir_key(NIR)) % 97) + 1:02d}",
    "16 characters": NIR + nir_key(NIR) + "1",
    "empty": "",
    "only spaces": "   ",
    "garbage": "not a NIR at all",
    "letters in the body": "18505780060AB",
    "Corsica 2C": "163022C123456",
    "1 MB string": "1" * 1_000_000,
    "fullwidth digits": "".join(chr(0xFF10 + int(d)) for d in NIR),
    "arabic-indic digits": "".join(chr(0x0660 + int(d)) for d in NIR),
    "control characters": "1850578\x00006084",
}
VALID_NIRS = {
    "13 characters": NIR,
    "15 with its key": NIR + nir_key(NIR),
    "spaced, with its key": _spaced(NIR + nir_key(NIR)),
    "spaced, without key": _spaced(NIR),
    "tabs and newlines": f"\t{NIR[:7]}\n{NIR[7:]} ",
}


@pytest.mark.parametrize("raw", INVALID_NIRS.values(), ids=INVALID_NIRS.keys())
async def test_an_invalid_nir_is_refused_before_anything_is_counted(raw: str) -> None:
    """A malformed NIR is INVALID_NIR with a violation on the nir field, and costs nothing."""
    service, fakes = make_service()
    fakes.add_account()

    error = await refusal(service.login.check_credentials(credentials(raw)))

    assert error.reason is ErrorReason.INVALID_NIR
    assert error.message == Messages.INVALID_NIR
    assert [violation.field for violation in error.violations] == ["nir"]
    assert fakes.hasher.verifications == 0
    assert (await service.advisor.get_lock_status(NIR)).password_failures == 0


@pytest.mark.parametrize("raw", VALID_NIRS.values(), ids=VALID_NIRS.keys())
async def test_a_nir_is_read_with_or_without_its_key_and_spaces(raw: str) -> None:
    """The 13 characters, or 15 with the right key, spaces ignored, all name the same account."""
    service, fakes = make_service()
    fakes.add_account()

    outcome = await service.login.check_credentials(credentials(raw))

    assert isinstance(outcome, CodeRequired)


@pytest.mark.parametrize("body", [CORSICA_2A, CORSICA_2B, CORSICA_2A.lower()])
@pytest.mark.parametrize("with_key", [False, True], ids=["13", "15"])
async def test_corsican_nirs_are_accepted(body: str, with_key: bool) -> None:
    """A NIR born in Corsica (2A, 2B) logs in, with or without its key."""
    service, fakes = make_service()
    fakes.add_account(nir=body.upper())
    raw = body + nir_key(body) if with_key else body

    outcome = await service.login.check_credentials(credentials(raw))

    assert isinstance(outcome, CodeRequired)


# --- steps 2 and 3: locks and wrong passwords ------------------------------------------------


async def _wrong_passwords(service: Service, count: int, nir: str = NIR) -> list[AuthError]:
    return [
        await refusal(service.login.check_credentials(credentials(nir, "wrong password")))
        for _ in range(count)
    ]


async def test_wrong_passwords_count_down_then_lock_for_fifteen_minutes() -> None:
    """Two wrong passwords leave 2 then 1 attempts; the third locks the NIR until 15:47 Paris."""
    service, fakes = make_service()
    fakes.add_account()

    first, second, third = await _wrong_passwords(service, 3)

    assert [first.reason, second.reason] == [ErrorReason.INVALID_CREDENTIALS] * 2
    assert [first.message, second.message] == [WRONG_ENTRY] * 2
    assert [first.attempts_remaining, second.attempts_remaining] == [2, 1]
    assert third.reason is ErrorReason.PASSWORD_ATTEMPTS_LOCKED
    assert third.lock_expire_time == fakes.clock.now() + timedelta(minutes=15)
    assert third.message == PASSWORD_LOCK_1547
    assert third.attempts_remaining is None


async def test_a_lock_blocks_even_the_right_password_without_verifying_it() -> None:
    """While locked, the right password gets the lock's own error and costs no argon2 verify."""
    service, fakes = make_service()
    fakes.add_account()
    *_, locked = await _wrong_passwords(service, 3)
    work_before = fakes.hasher.verifications
    fakes.clock.advance(minutes=14, seconds=59)

    error = await refusal(service.login.check_credentials(credentials()))

    assert error.reason is ErrorReason.PASSWORD_ATTEMPTS_LOCKED
    assert error.lock_expire_time == locked.lock_expire_time
    assert error.message == PASSWORD_LOCK_1547
    assert fakes.hasher.verifications == work_before


async def test_the_password_lock_ends_after_failure_lock_with_a_fresh_counter() -> None:
    """Fifteen minutes after the third failure the right password passes, and counting restarts."""
    service, fakes = make_service()
    fakes.add_account()
    await _wrong_passwords(service, 3)
    fakes.clock.advance(minutes=15)

    assert isinstance(await service.login.check_credentials(credentials()), CodeRequired)
    (again,) = await _wrong_passwords(service, 1)
    assert again.attempts_remaining == 2


async def test_the_password_lock_follows_the_configured_duration() -> None:
    """With failure_lock at 5 minutes, the NIR is free again after 5 minutes."""
    policy = Policy(failure_lock=timedelta(minutes=5))
    service, fakes = make_service(policy)
    fakes.add_account()
    *_, locked = await _wrong_passwords(service, 3)

    assert locked.lock_expire_time == fakes.clock.now() + timedelta(minutes=5)
    fakes.clock.advance(minutes=5)
    assert isinstance(await service.login.check_credentials(credentials()), CodeRequired)


async def test_failures_older_than_the_failure_window_stop_counting() -> None:
    """A wrong password older than fifteen minutes no longer brings the lock closer."""
    service, fakes = make_service()
    fakes.add_account()
    await _wrong_passwords(service, 1)
    fakes.clock.advance(minutes=10)
    await _wrong_passwords(service, 1)
    fakes.clock.advance(minutes=5, seconds=1)  # the first failure is now 15 min 1 s old

    (third,) = await _wrong_passwords(service, 1)

    assert third.reason is ErrorReason.INVALID_CREDENTIALS
    assert third.attempts_remaining == 1


async def test_the_right_password_resets_the_password_counter() -> None:
    """Two wrong passwords then the right one: the next wrong one has 2 attempts left again."""
    service, fakes = make_service()
    fakes.add_account()
    await _wrong_passwords(service, 2)

    await start_login(service)
    (after,) = await _wrong_passwords(service, 1)

    assert after.attempts_remaining == 2


async def test_the_right_password_does_not_reset_the_code_counter() -> None:
    """Logging in again with the password does not give an attacker three more code guesses."""
    service, fakes = make_service()
    fakes.add_account()
    login_id = await start_login(service)
    code = await send_code(service, fakes, login_id)
    for _ in range(2):
        await refusal(service.login.verify_code(login_id, wrong_code(code), False))

    login_id = await start_login(service)
    code = await send_code(service, fakes, login_id)
    error = await refusal(service.login.verify_code(login_id, wrong_code(code), False))

    assert error.reason is ErrorReason.CODE_ATTEMPTS_LOCKED


async def test_a_code_lock_blocks_check_credentials() -> None:
    """After three wrong codes even the right password gets the code lock's error."""
    service, fakes = make_service()
    fakes.add_account()
    login_id = await start_login(service)
    code = await send_code(service, fakes, login_id)
    for _ in range(3):
        locked = await refusal(service.login.verify_code(login_id, wrong_code(code), False))

    error = await refusal(service.login.check_credentials(credentials()))

    assert error.reason is ErrorReason.CODE_ATTEMPTS_LOCKED
    assert error.lock_expire_time == locked.lock_expire_time


async def test_an_empty_password_is_an_invalid_request_that_is_not_counted() -> None:
    """An empty password is INVALID_REQUEST, never hashed and not counted."""
    service, fakes = make_service()
    fakes.add_account()

    error = await refusal(service.login.check_credentials(credentials(password="")))

    assert error.reason is ErrorReason.INVALID_REQUEST
    assert [violation.field for violation in error.violations] == ["password"]
    assert fakes.hasher.verifications == 0
    assert (await service.advisor.get_lock_status(NIR)).password_failures == 0


async def test_a_lock_answers_whatever_the_password_even_an_empty_one() -> None:
    """While the NIR is locked, even an empty password gets the lock's own error (SPEC §2)."""
    service, fakes = make_service()
    fakes.add_account()
    await _wrong_passwords(service, 3)

    error = await refusal(service.login.check_credentials(credentials(password="")))

    assert error.reason is ErrorReason.PASSWORD_ATTEMPTS_LOCKED


# --- unknown NIRs ----------------------------------------------------------------------------


async def _three_attempts(
    nir: str, with_account: bool
) -> tuple[list[tuple[object, ...]], FakePasswordHasher]:
    service, fakes = make_service()
    if with_account:
        fakes.add_account(nir=nir)
    errors = await _wrong_passwords(service, 3, nir)
    blocked = await refusal(service.login.check_credentials(credentials(nir, PASSWORD)))
    seen: list[tuple[object, ...]] = [
        (e.reason, e.message, e.attempts_remaining, e.lock_expire_time, e.violations)
        for e in [*errors, blocked]
    ]
    return seen, fakes.hasher


async def test_an_unknown_nir_behaves_exactly_like_a_wrong_password() -> None:
    """An unknown NIR gets the same errors, countdown and lock, for the same argon2 work."""
    known, known_hasher = await _three_attempts(NIR, with_account=True)
    unknown, unknown_hasher = await _three_attempts(UNKNOWN_NIR, with_account=False)

    assert unknown == known
    assert known_hasher.verifications == unknown_hasher.verifications == 3
    assert (unknown_hasher.verify_calls, unknown_hasher.verify_dummy_calls) == (0, 3)


async def test_any_password_of_an_unknown_nir_is_invalid_credentials() -> None:
    """An unknown NIR is INVALID_CREDENTIALS whatever the password, after a dummy verify."""
    service, fakes = make_service()
    fakes.add_account()

    error = await refusal(service.login.check_credentials(credentials(UNKNOWN_NIR, PASSWORD)))

    assert error.reason is ErrorReason.INVALID_CREDENTIALS
    assert error.message == WRONG_ENTRY
    assert error.attempts_remaining == 2
    assert fakes.hasher.verify_dummy_calls == 1
    assert fakes.registry.lookups == []


# --- steps 5 and 7: answers given only after the password ------------------------------------


@pytest.mark.parametrize(
    ("affiliation", "reason", "message"),
    [
        (Affiliation.NOT_COVERED, ErrorReason.NOT_COVERED, Messages.NOT_COVERED),
        (Affiliation.PENDING, ErrorReason.AFFILIATION_PENDING, Messages.AFFILIATION_PENDING),
    ],
    ids=["case 7", "case 8"],
)
async def test_the_rfi_refusals_come_after_the_right_password(
    affiliation: Affiliation, reason: ErrorReason, message: str
) -> None:
    """A NIR outside the covered schemes gets case 7 or 8, but only with the right password."""
    service, fakes = make_service()
    fakes.add_account()
    fakes.registry.affiliations[NIR] = affiliation

    wrong = await refusal(service.login.check_credentials(credentials(password="nope")))
    assert wrong.reason is ErrorReason.INVALID_CREDENTIALS
    assert fakes.registry.lookups == []

    right = await refusal(service.login.check_credentials(credentials()))
    assert right.reason is reason
    assert right.message == message


async def test_the_rfi_texts_are_the_guides() -> None:
    """The texts of cases 7 and 8 are the guide's, word for word."""
    assert Messages.NOT_COVERED == (
        "D'après nos informations vous ne dépendez pas du régime général ou de l'un des "
        "régimes partenaires de l'Assurance Maladie. Veuillez consulter les services de "
        "votre régime d'affiliation."
    )
    assert Messages.AFFILIATION_PENDING == (
        "Votre rattachement à votre caisse d'assurance maladie est en cours, vous pourrez "
        "bientôt bénéficier de votre compte ameli."
    )


async def test_an_rfi_outage_fails_closed() -> None:
    """If the registry cannot be reached, nobody gets in and no login is created."""
    service, fakes = make_service()
    fakes.add_account()
    fakes.registry.failure = DependencyUnavailable("rfi", "down")

    with pytest.raises(DependencyUnavailable):
        await service.login.check_credentials(credentials(channel=Channel.MOBILE_APP))
    assert fakes.audit.of_kind("authenticated") == []


EMAIL_NOT_VALIDATED = (
    "Désormais, un code de sécurité envoyé par mail est nécessaire pour vous connecter. "
    "Or, vous n'avez pas d'adresse mail renseignée dans votre compte. Validez-la dans "
    "l'application Compte ameli ou contactez votre caisse d'assurance maladie."
)


@pytest.mark.parametrize(
    ("email", "validated"), [(None, False), (EMAIL, False), (None, True)], ids=str
)
async def test_an_account_without_validated_email_gets_case_1(
    email: str | None, validated: bool
) -> None:
    """No validated email: EMAIL_NOT_VALIDATED with the guide's text, and no login is created."""
    service, fakes = make_service()
    fakes.add_account(email=email, email_validated=validated)

    error = await refusal(service.login.check_credentials(credentials()))

    assert error.reason is ErrorReason.EMAIL_NOT_VALIDATED
    assert error.message == EMAIL_NOT_VALIDATED


async def test_case_1_is_only_told_after_the_right_password() -> None:
    """A wrong password on an account without a validated email is just INVALID_CREDENTIALS."""
    service, fakes = make_service()
    fakes.add_account(email=None, email_validated=False)

    error = await refusal(service.login.check_credentials(credentials(password="nope")))

    assert error.reason is ErrorReason.INVALID_CREDENTIALS


# --- step 6: channels and trusted devices ----------------------------------------------------


async def test_the_mobile_app_needs_no_code_and_clears_counters_and_quota() -> None:
    """On the mobile app the password suffices, and it clears the NIR's counters and quota."""
    service, fakes = make_service()
    fakes.add_account(email=None, email_validated=False)
    other = fakes.add_account(nir=OTHER_NIR)
    login_id = await start_login(service, OTHER_NIR)
    code = await send_code(service, fakes, login_id)
    await refusal(service.login.verify_code(login_id, wrong_code(code), False))
    await _wrong_passwords(service, 2, OTHER_NIR)

    outcome = await service.login.check_credentials(
        credentials(OTHER_NIR, channel=Channel.MOBILE_APP)
    )
    mobile_without_email = await service.login.check_credentials(
        credentials(channel=Channel.MOBILE_APP)
    )

    assert isinstance(outcome, Authenticated)
    assert outcome.account_id == other.account_id
    assert outcome.methods == (AuthMethod.PASSWORD,)
    assert outcome.authenticate_time == fakes.clock.now()
    assert isinstance(mobile_without_email, Authenticated)
    status = await service.advisor.get_lock_status(OTHER_NIR)
    assert (status.password_failures, status.code_failures, status.codes_sent_in_window) == (
        0,
        0,
        0,
    )
    assert len(fakes.mailer.sent) == 1


async def test_franceconnect_requires_a_code_by_default() -> None:
    """FranceConnect asks for the security code, whatever device token comes along."""
    service, fakes = make_service()
    account = fakes.add_account()
    token = new_token()
    await _trust(fakes, token, account.account_id)

    outcome = await service.login.check_credentials(
        credentials(channel=Channel.FRANCECONNECT, device_token=token)
    )

    assert isinstance(outcome, CodeRequired)


async def test_franceconnect_can_be_configured_to_need_no_code() -> None:
    """With franceconnect_requires_code=False, FranceConnect logs in with the password only."""
    service, fakes = make_service(Policy(franceconnect_requires_code=False))
    fakes.add_account()

    outcome = await service.login.check_credentials(credentials(channel=Channel.FRANCECONNECT))

    assert isinstance(outcome, Authenticated)
    assert outcome.methods == (AuthMethod.PASSWORD,)


async def _trust(fakes: Fakes, token: str, account_id: str, days: int = 180) -> None:
    """Register ``token`` as a device trusted by ``account_id`` for ``days``."""
    now = fakes.clock.now()
    device = TrustedDevice(fakes.keyring.token_hash(token), account_id, now, now + timedelta(days))
    await fakes.devices.add(device)


async def test_a_trusted_device_of_this_account_skips_the_code_on_the_web() -> None:
    """On the web, a valid device token of this account logs in without a code."""
    service, fakes = make_service()
    account = fakes.add_account()
    token = new_token()
    await _trust(fakes, token, account.account_id)

    outcome = await service.login.check_credentials(credentials(device_token=token))

    assert isinstance(outcome, Authenticated)
    assert outcome.methods == (AuthMethod.PASSWORD, AuthMethod.TRUSTED_DEVICE)
    assert fakes.mailer.attempts == []


async def test_a_re_imported_account_keeps_its_id_and_its_trusted_devices() -> None:
    """Importing a NIR again (new password, new id offered) leaves its devices trusted."""
    service, fakes = make_service()
    account = fakes.add_account()
    token = new_token()
    await _trust(fakes, token, account.account_id)
    re_imported = replace(
        account, account_id="a-new-id", password_hash=FakePasswordHasher.PREFIX + "New-Pass-8"
    )

    await fakes.accounts.add(re_imported)
    outcome = await service.login.check_credentials(
        credentials(password="New-Pass-8", device_token=token)
    )

    assert isinstance(outcome, Authenticated)
    assert outcome.account_id == account.account_id
    assert outcome.methods == (AuthMethod.PASSWORD, AuthMethod.TRUSTED_DEVICE)
    assert fakes.mailer.attempts == []


async def test_a_trusted_device_does_not_skip_the_password() -> None:
    """A trusted device with a wrong password is still INVALID_CREDENTIALS."""
    service, fakes = make_service()
    account = fakes.add_account()
    token = new_token()
    await _trust(fakes, token, account.account_id)

    error = await refusal(
        service.login.check_credentials(credentials(password="x", device_token=token))
    )

    assert error.reason is ErrorReason.INVALID_CREDENTIALS


async def test_a_device_token_of_another_account_asks_for_a_code() -> None:
    """A device trusted by another account gives no pass to this one."""
    service, fakes = make_service()
    fakes.add_account()
    other = fakes.add_account(nir=OTHER_NIR)
    token = new_token()
    await _trust(fakes, token, other.account_id)

    outcome = await service.login.check_credentials(credentials(device_token=token))

    assert isinstance(outcome, CodeRequired)


async def test_an_expired_device_token_asks_for_a_code() -> None:
    """Once its trust has ended, the device needs the code again."""
    service, fakes = make_service()
    account = fakes.add_account()
    token = new_token()
    await _trust(fakes, token, account.account_id, days=30)
    fakes.clock.advance(days=30)

    outcome = await service.login.check_credentials(credentials(device_token=token))

    assert isinstance(outcome, CodeRequired)


@pytest.mark.parametrize(
    "token", ["garbage", "x" * 10_000, " ", "\x00\xff"], ids=["garbage", "10 kB", "blank", "bytes"]
)
async def test_a_garbage_device_token_asks_for_a_code(token: str) -> None:
    """A token that was never issued, however long or odd, just means a code is required."""
    service, fakes = make_service()
    fakes.add_account()

    outcome = await service.login.check_credentials(credentials(device_token=token))

    assert isinstance(outcome, CodeRequired)


async def test_a_device_token_that_is_not_valid_unicode_asks_for_a_code() -> None:
    """A device token with a lone surrogate is just an unknown token (SPEC §6: no crash)."""
    service, fakes = make_service()
    fakes.add_account()

    outcome = await service.login.check_credentials(credentials(device_token="tok\ud800en"))

    assert isinstance(outcome, CodeRequired)


# --- step 8 and the rest ---------------------------------------------------------------------


async def test_code_required_shows_the_masked_email_and_the_login_expiry() -> None:
    """The code step names the address as t***@t***.com and ends with the login's lifetime."""
    service, fakes = make_service(Policy(login_ttl=timedelta(minutes=30)))
    fakes.add_account()

    outcome = await service.login.check_credentials(credentials())

    assert isinstance(outcome, CodeRequired)
    assert outcome.masked_email == "t***@t***.com"
    assert outcome.login_expire_time == fakes.clock.now() + timedelta(minutes=30)
    assert outcome.login_id
    assert fakes.mailer.attempts == []  # the code is only sent on RequestCode


async def test_each_check_creates_a_distinct_login() -> None:
    """Two password checks give two different login ids."""
    service, fakes = make_service()
    fakes.add_account()

    assert await start_login(service) != await start_login(service)


async def test_an_outdated_hash_is_replaced_after_the_right_password() -> None:
    """When the hasher's parameters changed, the right password is hashed again and stored."""
    service, fakes = make_service()
    account = fakes.add_account()
    fakes.hasher.rehash_needed = True

    await start_login(service)

    assert fakes.hasher.hash_calls == 1
    assert fakes.accounts.password_updates == [(account.account_id, "fake$" + PASSWORD)]


async def test_a_current_hash_is_left_alone() -> None:
    """Without new parameters nothing is rehashed, and a wrong password never rehashes."""
    service, fakes = make_service()
    fakes.add_account()

    await start_login(service)
    fakes.hasher.rehash_needed = True
    await refusal(service.login.check_credentials(credentials(password="nope")))

    assert fakes.hasher.hash_calls == 0
    assert fakes.accounts.password_updates == []


async def test_an_authentication_is_audited_without_the_nir() -> None:
    """The audit line of a login names the NIR by its keyed hash only."""
    service, fakes = make_service()
    account = fakes.add_account()

    await service.login.check_credentials(credentials(channel=Channel.MOBILE_APP))

    (event,) = fakes.audit.of_kind("authenticated")
    assert event.nir_ref == fakes.nir_ref()
    assert event.account_id == account.account_id
    assert NIR not in repr(event)
