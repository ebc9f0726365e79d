"""The advisor's GetAccount and RevokeTrustedDevices through the stubs, on both adapter sets."""

from __future__ import annotations

import grpc
import pytest
from ameli.auth.v1 import auth_pb2
from sqlalchemy import select

from ameli_grpc.adapters.sql.schema import audit_events
from ameli_grpc.domain.model import Affiliation
from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import ServiceUnderTest, nir, refused
from tests.support.databases import rows

ADVISOR_ID = "conseiller-3646"
REASON = "ordinateur partagé"


def revoke(nir_value: str, advisor_id: str = ADVISOR_ID) -> auth_pb2.RevokeTrustedDevicesRequest:
    return auth_pb2.RevokeTrustedDevicesRequest(nir=nir_value, advisor_id=advisor_id, reason=REASON)


async def wrong_passwords(
    service: ServiceUnderTest, nir_value: str, count: int, **fields: str
) -> None:
    for _ in range(count):
        await refused(service.login(nir_value, password="faux", **fields))


async def test_get_account_shows_contacts_rfi_and_the_trusted_devices(
    service: ServiceUnderTest,
) -> None:
    """Masked email and phone, validation, RFI, and two devices: the one used has a last use."""
    await service.add_account(nir(61), mobile_phone="06 12 34 56 78")
    used = (await service.login_on_personal_computer(nir(61))).device_token
    service.clock.advance(hours=1)
    await service.login_on_personal_computer(nir(61))
    service.clock.advance(hours=1)
    spared = await service.login(nir(61), device_token=used)
    assert spared.WhichOneof("result") == "authenticated"

    account = await service.advisor.GetAccount(auth_pb2.GetAccountRequest(nir=nir(61)))

    assert (account.masked_email, account.email_validated) == ("t***@t***.com", True)
    assert account.masked_phone == "06******78"
    assert account.affiliation == auth_pb2.AFFILIATION_AFFILIATED
    first, second = account.trusted_devices
    assert first.last_use_time.seconds == spared.authenticated.authenticate_time.seconds
    assert not second.HasField("last_use_time")
    assert first.create_time.seconds < second.create_time.seconds < first.last_use_time.seconds
    for device in (first, second):
        assert device.expire_time.seconds > device.create_time.seconds + 180 * 86400
    assert (len(account.locks), account.suspended, account.password_failures) == (0, False, 0)
    assert account.codes_sent_in_window == 0  # a successful login clears the quota


async def test_get_account_of_a_nir_without_account(service: ServiceUnderTest) -> None:
    """No account for that NIR: NOT_FOUND / ACCOUNT_NOT_FOUND with the French text."""
    refusal = await refused(service.advisor.GetAccount(auth_pb2.GetAccountRequest(nir=nir(62))))

    assert (refusal.code, refusal.reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")
    assert refusal.message == "Aucun compte ameli pour ce numéro de sécurité sociale."


@pytest.mark.parametrize(
    ("affiliation", "shown"),
    [
        (Affiliation.PENDING, auth_pb2.AFFILIATION_PENDING),
        (Affiliation.NOT_COVERED, auth_pb2.AFFILIATION_NOT_COVERED),
    ],
)
async def test_get_account_tells_what_the_rfi_says(
    service: ServiceUnderTest, affiliation: Affiliation, shown: auth_pb2.Affiliation.ValueType
) -> None:
    """The advisor sees why the insured cannot log in (guide, cases 7 and 8); no email: empty."""
    await service.add_account(nir(67), affiliation=affiliation, email=None, email_validated=False)

    account = await service.advisor.GetAccount(auth_pb2.GetAccountRequest(nir=nir(67)))

    assert account.affiliation == shown
    assert (account.masked_email, account.email_validated, account.masked_phone) == ("", False, "")


async def test_get_account_shows_each_lock_with_its_scope_and_the_suspension(
    make_service: ServiceFactory,
) -> None:
    """A stranger's failures suspend the untrusted scope; the owner's lock only the device."""
    service = await make_service(failure_window=60, max_consecutive_failures=4)
    await service.add_account(nir(63))
    token = (await service.login_on_personal_computer(nir(63))).device_token
    for _ in range(3):
        await wrong_passwords(service, nir(63), 1)
        service.clock.advance(seconds=61)
    await wrong_passwords(service, nir(63), 3, device_token=token)
    await wrong_passwords(service, nir(63), 1)  # the fourth unfamiliar failure: suspended

    account = await service.advisor.GetAccount(auth_pb2.GetAccountRequest(nir=nir(63)))

    assert account.suspended
    assert [(lock.reason, lock.scope) for lock in account.locks] == [
        (auth_pb2.ERROR_REASON_ACCOUNT_SUSPENDED, auth_pb2.LOCK_SCOPE_UNTRUSTED_DEVICES),
        (auth_pb2.ERROR_REASON_PASSWORD_ATTEMPTS_LOCKED, auth_pb2.LOCK_SCOPE_TRUSTED_DEVICES),
    ]
    suspension, device_lock = account.locks
    assert not suspension.HasField("expire_time")
    assert suspension.message.endswith("Contactez votre caisse d'assurance maladie au 3646.")
    assert device_lock.HasField("expire_time")
    status = await service.advisor.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(63)))
    assert list(account.locks) == list(status.locks)
    assert account.password_failures == status.password_failures


async def test_revocation_makes_the_old_computer_ask_for_the_code(
    service: ServiceUnderTest,
) -> None:
    """RevokeTrustedDevices un-trusts both computers, is audited, and the account stays."""
    await service.add_account(nir(64))
    token = (await service.login_on_personal_computer(nir(64))).device_token
    await service.login_on_personal_computer(nir(64))

    revoked = await service.advisor.RevokeTrustedDevices(revoke(nir(64)))

    assert revoked.revoked_count == 2
    assert revoked.revoke_time.seconds > 0
    again = await service.login(nir(64), device_token=token)
    assert again.WhichOneof("result") == "code_required"
    account = await service.advisor.GetAccount(auth_pb2.GetAccountRequest(nir=nir(64)))
    assert (len(account.trusted_devices), account.email_validated) == (0, True)
    assert service.container is not None
    columns = (audit_events.c.advisor_id, audit_events.c.reason, audit_events.c.caller)
    statement = select(*columns).where(audit_events.c.kind == "devices_revoked")
    audit = await rows(service.container.database, statement)
    assert [tuple(row) for row in audit] == [(ADVISOR_ID, REASON, "advisor-1")]


async def test_revocation_of_a_nir_without_account(service: ServiceUnderTest) -> None:
    """Revoking the devices of a NIR that has no account is ACCOUNT_NOT_FOUND."""
    refusal = await refused(service.advisor.RevokeTrustedDevices(revoke(nir(65))))

    assert (refusal.code, refusal.reason) == (grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND")


async def test_the_account_desk_is_for_advisors_and_checks_its_fields(
    service: ServiceUnderTest,
) -> None:
    """Portal and mobile keys are refused both RPCs; a NUL in the advisor id revokes nothing."""
    await service.add_account(nir(66))
    token = (await service.login_on_personal_computer(nir(66))).device_token

    for stub in (service.portal, service.mobile):
        for call in (
            stub.GetAccount(auth_pb2.GetAccountRequest(nir=nir(66))),
            stub.RevokeTrustedDevices(revoke(nir(66))),
        ):
            denied = await refused(call)
            assert (denied.code, denied.reason) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "CALLER_NOT_ALLOWED",
            )
    bad = await refused(service.advisor.RevokeTrustedDevices(revoke(nir(66), "a\x00b")))
    assert (bad.code, bad.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    trusted = await service.login(nir(66), device_token=token)
    assert trusted.WhichOneof("result") == "authenticated"
