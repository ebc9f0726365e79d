"""Account protection through the stubs, on both adapter sets (SPEC §7.2, §7.3)."""

from __future__ import annotations

import asyncio
import time

import grpc
from ameli.auth.v1 import auth_pb2
from google.rpc import error_details_pb2

from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import ServiceUnderTest, nir, refused


async def wrong_passwords(
    service: ServiceUnderTest, nir_value: str, count: int, **fields: str
) -> None:
    for _ in range(count):
        await refused(service.login(nir_value, password="faux", **fields))


async def test_an_attackers_lock_does_not_stop_the_owners_trusted_device(
    service: ServiceUnderTest,
) -> None:
    """Three unfamiliar failures lock strangers out; the owner's trusted device still logs in."""
    await service.add_account(nir(101))
    token = (await service.login_on_personal_computer(nir(101))).device_token
    await wrong_passwords(service, nir(101), 3)

    owner = await service.login(nir(101), device_token=token)
    stranger = await refused(service.login(nir(101)))

    assert owner.WhichOneof("result") == "authenticated"
    assert stranger.reason == "PASSWORD_ATTEMPTS_LOCKED"
    status = await service.advisor.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(101)))
    assert [(lock.reason, lock.scope) for lock in status.locks] == [
        (auth_pb2.ERROR_REASON_PASSWORD_ATTEMPTS_LOCKED, auth_pb2.LOCK_SCOPE_UNTRUSTED_DEVICES)
    ]


async def test_the_daily_limit_locks_until_the_next_day(make_service: ServiceFactory) -> None:
    """Failures spread beyond the window still reach the daily limit: locked for a day."""
    service = await make_service(failure_window=60, daily_failure_limit=4)
    await service.add_account(nir(102))
    for _ in range(3):
        await wrong_passwords(service, nir(102), 1)
        service.clock.advance(seconds=61)

    locked = await refused(service.login(nir(102), password="faux"))

    assert locked.reason == "PASSWORD_ATTEMPTS_LOCKED"
    assert locked.detail(error_details_pb2.RetryInfo).retry_delay.seconds == 86400
    service.clock.advance(hours=24, seconds=1)
    assert (await service.login(nir(102))).WhichOneof("result") == "code_required"


async def test_the_ceiling_suspends_until_an_advisor_unlocks(make_service: ServiceFactory) -> None:
    """Consecutive failures reach the ceiling: suspended, no end date, lifted by UnlockAccount."""
    service = await make_service(failure_window=60, max_consecutive_failures=4)
    await service.add_account(nir(103))
    for _ in range(3):
        await wrong_passwords(service, nir(103), 1)
        service.clock.advance(seconds=61)

    suspended = await refused(service.login(nir(103), password="faux"))
    service.clock.advance(days=7)
    still = await refused(service.login(nir(103)))

    for refusal in (suspended, still):
        assert (refusal.code, refusal.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "ACCOUNT_SUSPENDED",
        )
        assert refusal.message.endswith("Contactez votre caisse d'assurance maladie au 3646.")
        assert refusal.detail(error_details_pb2.RetryInfo) is None
    status = await service.advisor.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(103)))
    (lock,) = status.locks
    assert status.locked
    assert lock.reason == auth_pb2.ERROR_REASON_ACCOUNT_SUSPENDED
    assert not lock.HasField("expire_time")
    unlocked = await service.advisor.UnlockAccount(
        auth_pb2.UnlockAccountRequest(nir=nir(103), advisor_id="conseiller-3646", reason="appel")
    )
    assert unlocked.locks_cleared == 1
    assert (await service.login(nir(103))).WhichOneof("result") == "code_required"


async def test_parallel_right_passwords_are_never_told_of_a_lock(service: ServiceUnderTest) -> None:
    """Ten right passwords at once: each gets its code step or is told to retry, never a lock."""
    await service.add_account(nir(104))

    async def login() -> str:
        try:
            return str((await service.login(nir(104))).WhichOneof("result"))
        except grpc.aio.AioRpcError as error:
            return str(error.code())

    results = await asyncio.gather(*(login() for _ in range(10)))

    assert set(results) <= {"code_required", str(grpc.StatusCode.ABORTED)}
    assert "code_required" in results
    status = await service.portal.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(104)))
    assert (status.locked, status.password_failures) == (False, 0)


async def test_the_familiarity_check_does_not_tell_unknown_nirs_apart(
    service: ServiceUnderTest,
) -> None:
    """With a device token and a regulated address, a NIR without an account answers as fast
    as one with (medians): neither the familiarity lookup nor the client check tells them apart."""
    known_nirs = [nir(110 + i) for i in range(4)]
    for known_nir in known_nirs:
        await service.add_account(known_nir)
    token = (await service.login_on_personal_computer(known_nirs[0])).device_token

    async def median(nirs: list[str]) -> float:
        samples = []
        for nir_value in nirs:
            for attempt in range(2):  # below the lock
                started = time.perf_counter()
                await refused(
                    service.login(
                        nir_value,
                        password=f"faux-{attempt}",
                        device_token=token,
                        client=auth_pb2.ClientInfo(ip="198.51.100.7"),
                    )
                )
                samples.append(time.perf_counter() - started)
        return sorted(samples)[len(samples) // 2]

    known = await median(known_nirs[1:])
    unknown = await median([nir(120 + i) for i in range(3)])
    assert abs(known - unknown) < 0.5 * max(known, unknown) + 0.005
