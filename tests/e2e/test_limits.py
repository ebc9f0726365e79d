"""Locks that end by themselves, and limits that parallel requests cannot get around."""

from __future__ import annotations

import asyncio

import grpc
from ameli.auth.v1 import auth_pb2
from google.rpc import error_details_pb2

from tests.e2e.harness import ServiceUnderTest, nir, refused


async def test_password_lock_ends_after_fifteen_minutes(service: ServiceUnderTest) -> None:
    """A password lock ends by itself after 15 minutes; the right password then works."""
    await service.add_account(nir(31))
    for _ in range(3):
        await refused(service.login(nir(31), password="faux"))
    service.clock.advance(minutes=14, seconds=58)
    assert (await refused(service.login(nir(31)))).reason == "PASSWORD_ATTEMPTS_LOCKED"
    service.clock.advance(seconds=2)
    response = await service.login(nir(31))
    assert response.WhichOneof("result") == "code_required"


async def test_code_lock_ends_after_fifteen_minutes(service: ServiceUnderTest) -> None:
    """A code lock ends by itself; a new code can then be requested and used."""
    await service.add_account(nir(32))
    login_id = (await service.login(nir(32))).code_required.login_id
    code = await service.request_code(login_id)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(3):
        await refused(
            service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code=wrong))
        )
    service.clock.advance(minutes=15, seconds=1)
    fresh = await service.request_code(login_id)
    verified = await service.portal.VerifyCode(
        auth_pb2.VerifyCodeRequest(login_id=login_id, code=fresh)
    )
    assert verified.authenticated.account_id


async def test_failures_outside_the_window_no_longer_count(service: ServiceUnderTest) -> None:
    """Two failures, then a pause longer than the 15-minute window: the countdown starts again."""
    await service.add_account(nir(33))
    for _ in range(2):
        await refused(service.login(nir(33), password="faux"))
    service.clock.advance(minutes=15, seconds=1)
    refusal = await refused(service.login(nir(33), password="faux"))
    assert refusal.metadata["attemptsRemaining"] == "2"


async def test_quota_lock_ends_and_the_window_slides(service: ServiceUnderTest) -> None:
    """After the one-hour quota lock and the sliding hour, codes can be requested again."""
    await service.add_account(nir(34))
    login_id = (await service.login(nir(34))).code_required.login_id
    for _ in range(5):
        await service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id))
    refusal = await refused(
        service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id))
    )
    assert refusal.reason == "CODE_QUOTA_EXCEEDED"
    service.clock.advance(minutes=59, seconds=58)
    again = await refused(service.login(nir(34)))
    assert again.reason == "CODE_QUOTA_EXCEEDED"
    service.clock.advance(seconds=2)
    login_id = (await service.login(nir(34))).code_required.login_id
    sent = await service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id))
    assert sent.codes_remaining == 4


async def test_success_resets_the_counters(service: ServiceUnderTest) -> None:
    """A successful login clears the failure counters and the code quota of the NIR."""
    await service.add_account(nir(35))
    await refused(service.login(nir(35), password="faux"))
    login_id = (await service.login(nir(35))).code_required.login_id
    for _ in range(3):
        await service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id))
    code = await service.request_code(login_id)
    await service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code=code))
    status = await service.portal.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(35)))
    assert (status.password_failures, status.code_failures, status.codes_sent_in_window) == (
        0,
        0,
        0,
    )


async def test_forty_parallel_wrong_codes_evaluate_at_most_three(
    service: ServiceUnderTest,
) -> None:
    """40 wrong codes at once: at most 3 are evaluated, every other one meets the lock."""
    await service.add_account(nir(36))
    login_id = (await service.login(nir(36))).code_required.login_id
    code = await service.request_code(login_id)
    wrong = "000000" if code != "000000" else "111111"
    calls = [
        refused(
            service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code=wrong))
        )
        for _ in range(40)
    ]
    reasons = [refusal.reason for refusal in await asyncio.gather(*calls)]
    assert reasons.count("INVALID_CODE") == 2  # the third evaluated one set the lock
    assert set(reasons) <= {"INVALID_CODE", "CODE_ATTEMPTS_LOCKED", "ATTEMPT_IN_PROGRESS"}
    status = await service.portal.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(36)))
    assert status.code_failures == 3
    assert status.locked


async def test_a_right_code_hidden_among_parallel_wrong_ones_cannot_get_in_late(
    service: ServiceUnderTest,
) -> None:
    """Once three attempts are under way, even the right code is refused until the lock ends."""
    await service.add_account(nir(37))
    login_id = (await service.login(nir(37))).code_required.login_id
    code = await service.request_code(login_id)
    wrong = "000000" if code != "000000" else "111111"
    await asyncio.gather(
        *(
            refused(
                service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code=wrong))
            )
            for _ in range(10)
        )
    )
    late = await refused(
        service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code=code))
    )
    assert late.reason == "CODE_ATTEMPTS_LOCKED"


async def test_thirty_parallel_code_requests_send_exactly_five_emails(
    service: ServiceUnderTest,
) -> None:
    """30 RequestCode at once: exactly 5 emails leave, the others meet the quota."""
    await service.add_account(nir(38))
    login_id = (await service.login(nir(38))).code_required.login_id

    async def request() -> grpc.StatusCode:
        try:
            await service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id))
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    codes = await asyncio.gather(*(request() for _ in range(30)))
    assert codes.count(grpc.StatusCode.OK) == 5
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 25
    # RequestCode answers after the SMTP server accepted the email: all are counted.
    assert len(service.smtp.deliveries) == 5


async def test_parallel_wrong_passwords_lock_at_three(service: ServiceUnderTest) -> None:
    """20 wrong passwords at once: 3 are evaluated, the third locks; the others meet the lock,
    or, while the three are in flight, are told to retry (ABORTED with RetryInfo)."""
    await service.add_account(nir(39))
    refusals = await asyncio.gather(
        *(refused(service.login(nir(39), password=f"faux-{i}")) for i in range(20))
    )
    reasons = [refusal.reason for refusal in refusals]
    assert reasons.count("INVALID_CREDENTIALS") == 2
    assert reasons.count("PASSWORD_ATTEMPTS_LOCKED") + reasons.count("ATTEMPT_IN_PROGRESS") == 18
    assert reasons.count("PASSWORD_ATTEMPTS_LOCKED") >= 1
    for waiting in (r for r in refusals if r.reason == "ATTEMPT_IN_PROGRESS"):
        assert waiting.code == grpc.StatusCode.ABORTED
        assert waiting.detail(error_details_pb2.RetryInfo).retry_delay.seconds == 1
