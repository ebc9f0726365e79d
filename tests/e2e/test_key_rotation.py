"""Rotating the secret key (README, "Rotating the secret key") and the caller keys.

Each scenario starts the service with key A, restarts it with key B and
``AMELI_PREVIOUS_SECRET_KEYS`` = A, then with key B alone: what A left behind
is still recognised, and moved under B on first use.
"""

from __future__ import annotations

import re
import secrets

import grpc
from ameli.auth.v1 import auth_pb2
from sqlalchemy import select

from ameli_grpc.adapters.sql.schema import account_setups, audit_events
from ameli_grpc.domain.tokens import sha256_hex
from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import PASSWORD, ServiceUnderTest, nir, refused
from tests.support.databases import rows

KEY_A, KEY_B = secrets.token_hex(32), secrets.token_hex(32)
ROTATING = {"secret_key": KEY_B, "previous_secret_keys": KEY_A}
ROTATED = {"secret_key": KEY_B, "previous_secret_keys": ""}


async def test_a_device_trusted_before_the_rotation_still_spares_the_code(
    make_service: ServiceFactory,
) -> None:
    """Trusted under A, the device skips the code under B with A listed, and again under B
    alone: its first use re-hashed it under B; the advisor still sees one device."""
    service = await make_service(secret_key=KEY_A)
    await service.add_account(nir(1))
    token = (await service.login_on_personal_computer(nir(1))).device_token

    for settings in (ROTATING, ROTATED):
        await service.restart(**settings)
        again = await service.login(nir(1), device_token=token)
        assert again.WhichOneof("result") == "authenticated", settings
        assert auth_pb2.AUTH_METHOD_TRUSTED_DEVICE in again.authenticated.methods

    account = await service.advisor.GetAccount(auth_pb2.GetAccountRequest(nir=nir(1)))
    assert len(account.trusted_devices) == 1
    assert account.trusted_devices[0].HasField("last_use_time")


async def test_without_the_previous_key_a_device_it_trusted_needs_the_code(
    make_service: ServiceFactory,
) -> None:
    """The counter-test: a device trusted under A and never used since is unknown to B alone."""
    service = await make_service(secret_key=KEY_A)
    await service.add_account(nir(2))
    token = (await service.login_on_personal_computer(nir(2))).device_token

    await service.restart(**ROTATED)

    again = await service.login(nir(2), device_token=token)
    assert again.WhichOneof("result") == "code_required"


async def test_a_lock_set_before_the_rotation_still_refuses(make_service: ServiceFactory) -> None:
    """Locked under A: the right password is still refused under B with A listed, then under
    B alone (the lock moved), until the lock ends."""
    service = await make_service(secret_key=KEY_A)
    await service.add_account(nir(3))
    for _ in range(3):
        await refused(service.login(nir(3), password="faux"))

    for settings in (ROTATING, ROTATED):
        await service.restart(**settings)
        refusal = await refused(service.login(nir(3)))
        assert refusal.reason == "PASSWORD_ATTEMPTS_LOCKED", settings
        status = await service.advisor.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(3)))
        assert status.locked
        assert status.password_failures == 3

    service.clock.advance(minutes=15)
    after = await service.login(nir(3))
    assert after.WhichOneof("result") == "code_required"


async def test_a_code_sent_before_the_rotation_is_accepted_after_it(
    make_service: ServiceFactory,
) -> None:
    """A login and its emailed code from before the restart under B (A listed) log in."""
    service = await make_service(secret_key=KEY_A)
    await service.add_account(nir(4))
    login_id = (await service.login(nir(4))).code_required.login_id
    code = await service.request_code(login_id)

    await service.restart(**ROTATING)

    verified = await service.portal.VerifyCode(
        auth_pb2.VerifyCodeRequest(login_id=login_id, code=code)
    )
    assert verified.authenticated.account_id


async def test_setup_tokens_and_provisional_codes_do_not_depend_on_the_key(
    make_service: ServiceFactory,
) -> None:
    """A setup token issued under A is still recorded as its plain SHA-256 after the rotation
    (the account-creation flow checks it without our key); a provisional code sent under A
    is accepted under B."""
    service = await make_service(secret_key=KEY_A)
    for serial in (5, 6):
        await service.add_account(nir(serial), mobile_phone="06 12 34 56 78")
    first = await provisional_code(service, nir(5))
    setup_token = (await service.login(nir(5), password=first)).account_setup_required.setup_token
    second = await provisional_code(service, nir(6))

    await service.restart(**ROTATED)

    assert service.container is not None
    hashes = await rows(service.container.database, select(account_setups.c.token_hash))
    assert [row.token_hash for row in hashes] == [sha256_hex(setup_token)]
    setup = await service.login(nir(6), password=second)
    assert setup.account_setup_required.setup_token


async def provisional_code(service: ServiceUnderTest, nir_value: str) -> str:
    """ResetAccount with the SMS, and the provisional code read from the outbox."""
    before = set(service.settings.outbox_dir.glob("*.sms.txt"))
    await service.advisor.ResetAccount(
        auth_pb2.ResetAccountRequest(
            nir=nir_value, advisor_id="conseiller-3646", reason="oubli", send_provisional_code=True
        )
    )
    (sms,) = set(service.settings.outbox_dir.glob("*.sms.txt")) - before
    match = re.search(r"est ([A-Z0-9]{10})\.", sms.read_text(encoding="utf-8"))
    assert match
    return match.group(1)


async def test_a_caller_key_rotates_by_listing_two_keys_under_one_name(
    make_service: ServiceFactory,
) -> None:
    """Old and new keys listed under one name both work, as that caller; once the old one is
    removed it is refused."""
    service = await make_service(portal_api_keys="portail-web:old-key,portail-web:new-key")
    request = auth_pb2.CheckCredentialsRequest(nir=nir(7), password=PASSWORD)
    await service.add_account(nir(7))

    for key in ("old-key", "new-key"):
        answer = await service.stub(key).CheckCredentials(request)
        assert answer.WhichOneof("result") == "code_required"
        wrong = auth_pb2.CheckCredentialsRequest(nir=nir(8), password="faux")
        await refused(service.stub(key).CheckCredentials(wrong))
    assert service.container is not None
    callers = await rows(service.container.database, select(audit_events.c.caller))
    assert [row.caller for row in callers] == ["portail-web", "portail-web"]

    await service.restart(portal_api_keys="portail-web:new-key")
    refusal = await refused(service.stub("old-key").CheckCredentials(request))
    assert refusal.code == grpc.StatusCode.UNAUTHENTICATED
    answer = await service.stub("new-key").CheckCredentials(request)
    assert answer.WhichOneof("result") == "code_required"
