"""The advisor's back office: lock status and account reset (FAQ)."""

from __future__ import annotations

import json
import re

import grpc
from ameli.auth.v1 import auth_pb2

from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import ServiceUnderTest, nir, refused
from tests.support.http_gateway import gateway_server


def reset(nir_value: str, send_code: bool = False) -> auth_pb2.ResetAccountRequest:
    return auth_pb2.ResetAccountRequest(
        nir=nir_value,
        advisor_id="conseiller-3646",
        reason="messagerie perdue",
        send_provisional_code=send_code,
    )


async def test_lock_status_tells_why_and_until_when(service: ServiceUnderTest) -> None:
    """GetLockStatus lists the active lock with its message and the counters."""
    await service.add_account(nir(51))
    for _ in range(3):
        await refused(service.login(nir(51), password="faux"))
    status = await service.advisor.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(51)))
    assert status.locked
    assert [lock.reason for lock in status.locks] == [
        auth_pb2.ERROR_REASON_PASSWORD_ATTEMPTS_LOCKED
    ]
    assert status.locks[0].message.startswith("Pour des raisons de sécurité")
    assert status.password_failures == 3


async def test_reset_deletes_the_account_its_devices_and_locks(service: ServiceUnderTest) -> None:
    """ResetAccount deletes the account, its trusted devices, locks and counters."""
    await service.add_account(nir(52))
    token = (await service.login_on_personal_computer(nir(52))).device_token
    for _ in range(3):
        await refused(service.login(nir(52), password="faux"))

    done = await service.advisor.ResetAccount(reset(nir(52)))
    assert done.reset_time.seconds > 0
    assert not done.provisional_code_sent
    status = await service.advisor.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(52)))
    assert not status.locked
    assert status.password_failures == 0
    gone = await refused(service.login(nir(52), device_token=token))
    assert gone.reason == "INVALID_CREDENTIALS"  # like any NIR without an account

    await service.add_account(nir(52))  # the person creates a new account
    again = await service.login(nir(52), device_token=token)
    assert again.WhichOneof("result") == "code_required"  # the old device is forgotten


async def test_reset_sends_a_single_use_provisional_code(service: ServiceUnderTest) -> None:
    """With a mobile on file, a provisional code is sent by SMS and works once for account setup."""
    await service.add_account(nir(53), mobile_phone="06 12 34 56 78")
    done = await service.advisor.ResetAccount(reset(nir(53), send_code=True))
    assert done.provisional_code_sent
    assert done.masked_phone == "06******78"
    assert done.provisional_code_expire_time.seconds > done.reset_time.seconds

    outbox = service.settings.outbox_dir
    sms = next(outbox.glob("*.sms.txt")).read_text(encoding="utf-8")
    match = re.search(r"est ([A-Z0-9]{10})\.", sms)
    assert match, "the SMS carries the provisional code"
    provisional = match.group(1)

    setup = await service.login(nir(53), password=provisional)
    assert setup.WhichOneof("result") == "account_setup_required"
    assert setup.account_setup_required.setup_token
    reused = await refused(service.login(nir(53), password=provisional))
    assert reused.reason == "INVALID_CREDENTIALS"


async def test_reset_without_mobile_sends_nothing(service: ServiceUnderTest) -> None:
    """Without a mobile phone on file no provisional code can be sent."""
    await service.add_account(nir(54))
    done = await service.advisor.ResetAccount(reset(nir(54), send_code=True))
    assert not done.provisional_code_sent
    assert done.masked_phone == ""


async def test_reset_of_an_unknown_nir(service: ServiceUnderTest) -> None:
    """Resetting a NIR without an account says so to the advisor."""
    refusal = await refused(service.advisor.ResetAccount(reset(nir(55))))
    assert refusal.code == grpc.StatusCode.NOT_FOUND
    assert refusal.reason == "ACCOUNT_NOT_FOUND"
    assert refusal.message == "Aucun compte ameli pour ce numéro de sécurité sociale."


async def test_a_login_under_way_ends_with_the_reset(service: ServiceUnderTest) -> None:
    """A login started before the reset cannot be finished after it."""
    await service.add_account(nir(56))
    login_id = (await service.login(nir(56))).code_required.login_id
    code = await service.request_code(login_id)
    await service.advisor.ResetAccount(reset(nir(56)))
    refusal = await refused(
        service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code=code))
    )
    assert refusal.reason == "LOGIN_NOT_FOUND"


async def test_reset_sends_the_provisional_code_through_the_sms_gateway(
    make_service: ServiceFactory,
) -> None:
    """With AMELI_SMS_URL the code goes to the HTTP gateway; a refusing gateway withdraws it."""
    async with gateway_server() as gateway:
        service = await make_service(sms_url=gateway.url, sms_api_key="sms-key", sms_timeout=1)
        await service.add_account(nir(57), mobile_phone="06 12 34 56 78")
        done = await service.advisor.ResetAccount(reset(nir(57), send_code=True))
        assert done.provisional_code_sent
        sent = json.loads(gateway.received[-1].body)
        assert sent["to"] == "+33612345678"
        assert gateway.received[-1].headers["authorization"] == "Bearer sms-key"
        provisional = sent["text"].split(" est ", 1)[1].split(".", 1)[0]
        setup = await service.login(nir(57), password=provisional)
        assert setup.WhichOneof("result") == "account_setup_required"

        gateway.status = 503
        await service.add_account(nir(58), mobile_phone="06 12 34 56 78")
        refused_sms = await service.advisor.ResetAccount(reset(nir(58), send_code=True))
        assert not refused_sms.provisional_code_sent
        text = json.loads(gateway.received[-1].body)["text"]
        withdrawn = text.split(" est ", 1)[1].split(".", 1)[0]
        assert (await refused(service.login(nir(58), password=withdrawn))).reason == (
            "INVALID_CREDENTIALS"
        )


def unlock(nir_value: str, advisor_id: str = "conseiller-3646") -> auth_pb2.UnlockAccountRequest:
    return auth_pb2.UnlockAccountRequest(nir=nir_value, advisor_id=advisor_id, reason="appel")


async def test_unlock_lifts_the_locks_and_keeps_account_and_device(
    service: ServiceUnderTest,
) -> None:
    """UnlockAccount lifts the password lock and the counters; the trusted device still works."""
    await service.add_account(nir(56))
    token = (await service.login_on_personal_computer(nir(56))).device_token
    for _ in range(3):
        await refused(service.login(nir(56), password="faux"))
    assert (await refused(service.login(nir(56)))).reason == "PASSWORD_ATTEMPTS_LOCKED"

    unlocked = await service.advisor.UnlockAccount(unlock(nir(56)))

    assert unlocked.locks_cleared == 1
    assert unlocked.unlock_time.seconds > 0
    status = await service.advisor.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(56)))
    assert (status.locked, status.password_failures) == (False, 0)
    trusted = await service.login(nir(56), device_token=token)
    assert trusted.WhichOneof("result") == "authenticated"


async def test_unlock_is_for_advisors_and_checks_its_fields(service: ServiceUnderTest) -> None:
    """A portal may not unlock; a NUL in the advisor id is INVALID_REQUEST and lifts nothing."""
    await service.add_account(nir(57))
    for _ in range(3):
        await refused(service.login(nir(57), password="faux"))

    denied = await refused(service.portal.UnlockAccount(unlock(nir(57))))
    assert (denied.code, denied.reason) == (grpc.StatusCode.PERMISSION_DENIED, "CALLER_NOT_ALLOWED")
    bad = await refused(service.advisor.UnlockAccount(unlock(nir(57), advisor_id="a\x00b")))
    assert (bad.code, bad.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    status = await service.advisor.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(57)))
    assert status.locked
