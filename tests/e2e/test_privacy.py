"""Nothing tells which NIRs have an account, and no log line carries personal data."""

from __future__ import annotations

import time

import structlog
from ameli.auth.v1 import auth_pb2

from tests.e2e.harness import EMAIL, PASSWORD, ServiceUnderTest, nir, refused


async def test_unknown_nir_is_indistinguishable_from_a_wrong_password(
    service: ServiceUnderTest,
) -> None:
    """An unknown NIR gets the same refusals, countdown and lock as a known one."""
    await service.add_account(nir(71))
    known = [await refused(service.login(nir(71), password="faux")) for _ in range(3)]
    unknown = [await refused(service.login(nir(72), password="faux")) for _ in range(3)]
    for left, right in zip(known, unknown, strict=True):
        assert (left.code, left.reason) == (right.code, right.reason)
        assert left.metadata.get("attemptsRemaining") == right.metadata.get("attemptsRemaining")
        assert left.message[:60] == right.message[:60]
    status = await service.portal.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(72)))
    assert status.locked


async def test_unknown_nir_takes_as_long_as_a_wrong_password(service: ServiceUnderTest) -> None:
    """The response time of an unknown NIR is that of a known one, within noise (dummy argon2)."""
    known_nirs = [nir(80 + i) for i in range(4)]
    for known_nir in known_nirs:
        await service.add_account(known_nir)

    async def median_wrong_password(nirs: list[str]) -> float:
        samples = []
        for nir_value in nirs:  # two wrong passwords each: below the lock
            for attempt in range(2):
                started = time.perf_counter()
                await refused(service.login(nir_value, password=f"faux-{attempt}"))
                samples.append(time.perf_counter() - started)
        return sorted(samples)[len(samples) // 2]

    known = await median_wrong_password(known_nirs)
    unknown = await median_wrong_password([nir(90 + i) for i in range(4)])
    assert abs(known - unknown) < 0.5 * max(known, unknown) + 0.005


async def test_no_log_line_carries_personal_data(service: ServiceUnderTest) -> None:
    """Across a whole login, wrong entries, a reset: no NIR, password, code or full email logged."""
    await service.add_account(nir(75), mobile_phone="0612345678")
    with structlog.testing.capture_logs() as logs:
        await refused(service.login(nir(75), password="Mauvais-Secret-42"))
        login_id = (await service.login(nir(75))).code_required.login_id
        code = await service.request_code(login_id)
        await refused(
            service.portal.VerifyCode(
                auth_pb2.VerifyCodeRequest(
                    login_id=login_id, code="999999" if code != "999999" else "0"
                )
            )
        )
        verified = await service.portal.VerifyCode(
            auth_pb2.VerifyCodeRequest(login_id=login_id, code=code, trust_device=True)
        )
        await service.advisor.ResetAccount(
            auth_pb2.ResetAccountRequest(
                nir=nir(75), advisor_id="A", reason="r", send_provisional_code=True
            )
        )
    assert logs, "the scenario logs something"
    text = repr(logs)
    sms = next(service.settings.outbox_dir.glob("*.sms.txt")).read_text(encoding="utf-8")
    provisional = sms.split(" est ", 1)[1].split(".", 1)[0]
    assert len(provisional) == 10
    secrets_seen = [
        provisional,
        nir(75),
        nir(75, with_key=False),
        PASSWORD,
        "Mauvais-Secret-42",
        code,
        EMAIL,
        "0612345678",
        verified.device_token,
        login_id,
    ]
    for secret in secrets_seen:
        assert secret not in text, f"a log line carries {secret[:3]}…"
