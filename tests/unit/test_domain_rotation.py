"""A rotation of the secret key (``AMELI_PREVIOUS_SECRET_KEYS``): nothing stored under the
previous key is dropped or lifted — trusted devices, locks, counts, codes in flight."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from fakes import (
    NIR,
    SECRET_KEY,
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
from ameli_grpc.config import ConfigurationError, Settings
from ameli_grpc.domain.advisor import AdvisorUseCases
from ameli_grpc.domain.errors import ErrorReason
from ameli_grpc.domain.login import LoginUseCases
from ameli_grpc.domain.model import Channel, LockKind
from ameli_grpc.domain.outcomes import AccountSetupRequired, Authenticated, CodeVerified
from ameli_grpc.domain.policy import Policy
from ameli_grpc.domain.tokens import Keyring, sha256_hex

NEW_KEY = b"n" * 32
ROTATED = Keyring(NEW_KEY, [SECRET_KEY])  # the fakes' key became the previous one
POLICY = Policy(client_failure_limit=3)
NEW_REF = ROTATED.nir_ref(NIR)
WINDOWS = (timedelta(minutes=15), timedelta(hours=1))  # for ``status``: failures, quota


def restarted(fakes: Fakes, keyring: Keyring, policy: Policy | None = None) -> Service:
    """The same accounts, devices and store, read by a process started with ``keyring``."""
    ports, policy = replace(fakes.ports(), keyring=keyring), policy or Policy()
    return Service(LoginUseCases(ports, policy), AdvisorUseCases(ports, policy))


async def trust_this_computer(service: Service, fakes: Fakes) -> str:
    login_id = await start_login(service)
    verified = await service.login.verify_code(
        login_id, await send_code(service, fakes, login_id), True
    )
    assert verified.device_token
    return verified.device_token


# --- the keyring ---------------------------------------------------------------------------


def test_without_previous_keys_the_keyring_computes_nothing_more() -> None:
    """No previous key: not rotating, and every ``previous_*`` digest list is empty."""
    keyring = Keyring(SECRET_KEY)

    assert not keyring.rotating
    assert keyring.previous_nir_refs(NIR) == ()
    assert keyring.previous_client_refs("192.0.2.7") == ()
    assert keyring.previous_token_hashes("token") == ()
    assert not Keyring(SECRET_KEY, [SECRET_KEY]).rotating  # the current key listed again


def test_previous_digests_are_those_the_previous_key_issued() -> None:
    """Each previous digest is what a keyring of that key alone computed; the current ones
    are the new key's."""
    before = Keyring(SECRET_KEY)

    assert ROTATED.rotating
    assert ROTATED.previous_nir_refs(NIR) == (before.nir_ref(NIR),)
    assert ROTATED.previous_client_refs("192.0.2.7") == (before.client_ref("192.0.2.7"),)
    assert ROTATED.previous_token_hashes("token") == (before.token_hash("token"),)
    assert ROTATED.nir_ref(NIR) == Keyring(NEW_KEY).nir_ref(NIR) != before.nir_ref(NIR)


def test_a_code_matches_under_the_current_or_a_previous_key_only() -> None:
    """A digest made under the previous key or the new one matches; another key's, or
    another code, does not."""
    under_old = Keyring(SECRET_KEY).code_digest("login", "123456")
    under_new = Keyring(NEW_KEY).code_digest("login", "123456")
    under_other = Keyring(b"o" * 32).code_digest("login", "123456")

    assert ROTATED.code_matches("login", "123456", under_old)
    assert ROTATED.code_matches("login", "123456", under_new)
    assert not ROTATED.code_matches("login", "123456", under_other)
    assert not ROTATED.code_matches("login", "654321", under_old)
    assert not Keyring(NEW_KEY).code_matches("login", "123456", under_old)


def test_a_short_previous_key_is_refused() -> None:
    """A previous key shorter than 32 bytes is refused like a short current key."""
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Keyring(NEW_KEY, [b"short"])


def test_the_setting_lists_previous_keys_separated_by_commas() -> None:
    """``AMELI_PREVIOUS_SECRET_KEYS``: comma-separated, spaces and empty entries ignored; a
    short entry refuses to start, naming the variable and never echoing the key."""
    keys = Settings(previous_secret_keys=f" {'a' * 64} ,, {'b' * 32}").previous_keys()
    assert keys == (b"a" * 64, b"b" * 32)
    assert Settings().previous_keys() == ()

    with pytest.raises(ConfigurationError, match="AMELI_PREVIOUS_SECRET_KEYS") as refused:
        Settings(previous_secret_keys=f"{'a' * 64},too-short-key").previous_keys()
    assert "too-short-key" not in str(refused.value)


# --- what was stored under the previous key --------------------------------------------------


async def test_a_device_trusted_under_the_previous_key_is_familiar_and_rehashed() -> None:
    """A device trusted before the rotation spares the code after it; it is then stored under
    the new key's hash with its dates, so it still works once the old key is dropped."""
    before, fakes = make_service()
    fakes.add_account()
    token = await trust_this_computer(before, fakes)
    trusted = fakes.devices.devices[Keyring(SECRET_KEY).token_hash(token)]
    fakes.clock.advance(days=30)

    rotating = restarted(fakes, ROTATED)
    outcome = await rotating.login.check_credentials(credentials(device_token=token))

    assert isinstance(outcome, Authenticated)
    assert list(fakes.devices.devices) == [ROTATED.token_hash(token)]
    rehashed = fakes.devices.devices[ROTATED.token_hash(token)]
    assert (rehashed.created_time, rehashed.expire_time) == (
        trusted.created_time,
        trusted.expire_time,
    )
    assert rehashed.last_use_time == fakes.clock.now()
    after = restarted(fakes, Keyring(NEW_KEY))
    again = await after.login.check_credentials(credentials(device_token=token))
    assert isinstance(again, Authenticated)


async def test_without_the_previous_key_a_device_it_trusted_is_unknown() -> None:
    """The counter-test: with the new key alone, a device not yet rehashed needs the code."""
    before, fakes = make_service()
    fakes.add_account()
    token = await trust_this_computer(before, fakes)

    after = restarted(fakes, Keyring(NEW_KEY))
    outcome = await after.login.check_credentials(credentials(device_token=token))

    assert not isinstance(outcome, Authenticated)


async def test_a_lock_set_under_the_previous_key_still_refuses() -> None:
    """Three wrong passwords before the rotation: the right one after it still gets the lock,
    which the advisor sees, and which unlocking lifts."""
    before, fakes = make_service()
    fakes.add_account()
    for _ in range(3):
        await refusal(before.login.check_credentials(credentials(NIR, "wrong")))

    rotating = restarted(fakes, ROTATED)
    error = await refusal(rotating.login.check_credentials(credentials()))

    assert error.reason is ErrorReason.PASSWORD_ATTEMPTS_LOCKED
    status = await rotating.advisor.get_lock_status(NIR)
    assert [lock.reason for lock in status.locks] == [ErrorReason.PASSWORD_ATTEMPTS_LOCKED]
    assert (await fakes.store.status(NEW_REF, fakes.clock.now(), *WINDOWS)).locks
    await rotating.advisor.unlock_account(NIR, "conseiller-1", "appel de l'assuré")
    after = restarted(fakes, Keyring(NEW_KEY))
    mobile = credentials(channel=Channel.MOBILE_APP)
    assert isinstance(await after.login.check_credentials(mobile), Authenticated)


async def test_failures_counted_under_the_previous_key_keep_counting() -> None:
    """Two wrong passwords before the rotation, one after: the third locks."""
    before, fakes = make_service()
    fakes.add_account()
    for _ in range(2):
        await refusal(before.login.check_credentials(credentials(NIR, "wrong")))

    rotating = restarted(fakes, ROTATED)
    third = await refusal(rotating.login.check_credentials(credentials(NIR, "wrong")))

    assert third.reason is ErrorReason.PASSWORD_ATTEMPTS_LOCKED


async def test_a_client_throttled_under_the_previous_key_is_still_throttled() -> None:
    """An address that sprayed wrong passwords before the rotation is refused after it."""
    before, fakes = make_service(POLICY)
    for serial in range(3):
        nir = f"18001751{serial:05d}"
        await refusal(before.login.check_credentials(credentials(nir, "wrong")))

    rotating = restarted(fakes, ROTATED, POLICY)
    error = await refusal(rotating.login.check_credentials(credentials()))

    assert error.reason is ErrorReason.CLIENT_THROTTLED


async def test_a_code_sent_before_the_rotation_is_accepted_after_it() -> None:
    """A login and its code made under the previous key: the right code logs in after the
    rotation."""
    before, fakes = make_service()
    fakes.add_account()
    login_id = await start_login(before)
    code = await send_code(before, fakes, login_id)

    rotating = restarted(fakes, ROTATED)
    verified = await rotating.login.verify_code(login_id, code, False)

    assert isinstance(verified, CodeVerified)


async def test_a_login_from_before_the_rotation_counts_under_the_new_ref() -> None:
    """Wrong codes on a login made under the previous key count, and lock, under the NIR's
    current ref, so a CheckCredentials moving the state meanwhile gives no fresh attempts."""
    before, fakes = make_service()
    fakes.add_account()
    login_id = await start_login(before)
    code = await send_code(before, fakes, login_id)
    rotating = restarted(fakes, ROTATED)

    for _ in range(2):
        await refusal(rotating.login.verify_code(login_id, wrong_code(code), False))
        await refusal(rotating.login.check_credentials(credentials(NIR, "wrong")))
    third = await refusal(rotating.login.verify_code(login_id, wrong_code(code), False))
    fourth = await refusal(rotating.login.verify_code(login_id, code, False))

    assert third.reason is ErrorReason.CODE_ATTEMPTS_LOCKED
    assert fourth.reason is ErrorReason.CODE_ATTEMPTS_LOCKED
    locks = (await fakes.store.status(NEW_REF, fakes.clock.now(), *WINDOWS)).locks
    assert [lock.kind for lock in locks] == [LockKind.CODE_ATTEMPTS]


async def test_a_reset_after_the_rotation_ends_a_login_from_before_it() -> None:
    """A login made under the previous key, then an advisor's reset under the new one: no
    code is sent for it, its right code is LOGIN_NOT_FOUND (the reset ends the logins under
    every listed key)."""
    before, fakes = make_service()
    fakes.add_account()
    login_id = await start_login(before)
    code = await send_code(before, fakes, login_id)
    rotating = restarted(fakes, ROTATED)

    await rotating.advisor.reset_account(NIR, "conseiller-3646", "appel", False)
    mails = len(fakes.mailer.sent)
    no_code = await refusal(rotating.login.request_code(login_id))
    refused = await refusal(rotating.login.verify_code(login_id, code, False))

    assert (no_code.reason, len(fakes.mailer.sent)) == (ErrorReason.LOGIN_NOT_FOUND, mails)
    assert refused.reason is ErrorReason.LOGIN_NOT_FOUND


async def test_the_setup_token_does_not_depend_on_the_key() -> None:
    """A provisional code sent before the rotation is accepted after it; its setup token is
    recorded as a plain SHA-256, which the account-creation flow checks without our key."""
    before, fakes = make_service()
    fakes.add_account()
    await before.advisor.reset_account(NIR, "conseiller-1", "oubli", True)
    provisional = fakes.sms.last_code

    rotating = restarted(fakes, ROTATED)
    outcome = await rotating.login.check_credentials(credentials(NIR, provisional))

    assert isinstance(outcome, AccountSetupRequired)
    hashes = [setup.token_hash for setup in fakes.provisional_codes.setups]
    assert hashes == [sha256_hex(outcome.setup_token)]


async def test_without_previous_keys_the_store_is_never_asked_to_adopt() -> None:
    """The cost of the rotation support with no previous key: no ``adopt`` call at all."""
    store = CountingStore()
    service, fakes = make_service(POLICY, store=store)
    fakes.add_account()

    login_id = await start_login(service)
    await service.login.verify_code(login_id, await send_code(service, fakes, login_id), True)
    await refusal(service.login.check_credentials(credentials(NIR, "wrong")))
    await service.advisor.get_lock_status(NIR)
    await service.advisor.unlock_account(NIR, "conseiller-1", "appel")

    assert store.adopted == 0
    rotating = restarted(fakes, ROTATED)
    await refusal(rotating.login.check_credentials(credentials(NIR, "wrong")))
    assert store.adopted == 2  # the NIR, the client address


class CountingStore(MemoryChallengeStore):
    """The memory store, counting the calls of ``adopt``."""

    def __init__(self) -> None:
        super().__init__()
        self.adopted = 0

    async def adopt(self, ref: str, previous_refs: Sequence[str], now: datetime) -> bool:
        self.adopted += 1
        return await super().adopt(ref, previous_refs, now)
