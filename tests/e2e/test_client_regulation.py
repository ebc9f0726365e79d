"""Client regulation (SPEC §7.4) through the stubs: password spraying from one address."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
from ameli.auth.v1 import auth_pb2
from google.rpc import error_details_pb2

from ameli_grpc.domain.messages import Messages
from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import ServiceUnderTest, nir, refused

LIMIT = 5
SPRAYER = auth_pb2.ClientInfo(ip="203.0.113.7", user_agent="curl/8.5")
NEIGHBOUR = auth_pb2.ClientInfo(ip="203.0.113.8", user_agent="Mozilla/5.0")
NAT = auth_pb2.ClientInfo(ip="198.51.100.20", user_agent="Mozilla/5.0")


async def regulated_service(make_service: ServiceFactory) -> ServiceUnderTest:
    return await make_service(client_failure_limit=LIMIT, client_allowlist="198.51.100.0/24")


async def spray(
    service: ServiceUnderTest, client: auth_pb2.ClientInfo, serials: range
) -> list[str]:
    """One wrong password per NIR from ``client``: the reasons of the answers."""
    return [
        (await refused(service.login(nir(serial), password="Printemps2023!", client=client))).reason
        for serial in serials
    ]


async def test_spraying_one_address_throttles_it_and_only_it(
    make_service: ServiceFactory,
) -> None:
    """Five wrong passwords over five NIRs are answered as usual; the next NIR, even with the
    right password, is RESOURCE_EXHAUSTED / CLIENT_THROTTLED with RetryInfo and the date,
    nothing counted on it; VerifyCode is refused too; a neighbour's address is not."""
    service = await regulated_service(make_service)
    await service.add_account(nir(701))
    login_id = (await service.login(nir(701), client=NEIGHBOUR)).code_required.login_id
    code = await service.request_code(login_id)
    before = service.clock.now()

    assert await spray(service, SPRAYER, range(710, 710 + LIMIT)) == ["INVALID_CREDENTIALS"] * 5
    throttled = await refused(service.login(nir(701), client=SPRAYER))
    verify = await refused(
        service.portal.VerifyCode(
            auth_pb2.VerifyCodeRequest(login_id=login_id, code=code, client=SPRAYER)
        )
    )

    assert throttled.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert throttled.reason == verify.reason == "CLIENT_THROTTLED"
    until = datetime.fromisoformat(throttled.metadata["lockExpireTime"])
    assert before + timedelta(seconds=900) <= until <= datetime.now(UTC) + timedelta(seconds=901)
    assert throttled.message == Messages.client_throttled(until)
    assert throttled.message.startswith("Trop de tentatives de connexion depuis votre appareil.")
    assert throttled.detail(error_details_pb2.RetryInfo).retry_delay.seconds >= 899
    status = await service.advisor.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(701)))
    assert (status.locked, status.password_failures, status.code_failures) == (False, 0, 0)
    verified = await service.portal.VerifyCode(
        auth_pb2.VerifyCodeRequest(login_id=login_id, code=code, client=NEIGHBOUR)
    )
    assert verified.authenticated.account_id
    neighbour = await service.login(nir(701), client=NEIGHBOUR)
    assert neighbour.WhichOneof("result") == "code_required"


async def test_an_allowlisted_address_is_not_regulated(make_service: ServiceFactory) -> None:
    """A NAT of AMELI_CLIENT_ALLOWLIST fails twice the limit and still logs in."""
    service = await regulated_service(make_service)
    await service.add_account(nir(720))

    assert set(await spray(service, NAT, range(730, 730 + 2 * LIMIT))) == {"INVALID_CREDENTIALS"}
    response = await service.login(nir(720), client=NAT)
    assert response.WhichOneof("result") == "code_required"


async def test_the_throttle_ends_after_the_client_lock(make_service: ServiceFactory) -> None:
    """After AMELI_CLIENT_LOCK (900 s) the address is served again."""
    service = await regulated_service(make_service)
    await service.add_account(nir(740))
    await spray(service, SPRAYER, range(750, 750 + LIMIT))

    service.clock.advance(seconds=895)
    assert (await refused(service.login(nir(740), client=SPRAYER))).reason == "CLIENT_THROTTLED"
    service.clock.advance(seconds=6)
    response = await service.login(nir(740), client=SPRAYER)
    assert response.WhichOneof("result") == "code_required"


async def test_a_malformed_client_ip_is_an_invalid_request(make_service: ServiceFactory) -> None:
    """An address that does not parse: INVALID_REQUEST with BadRequest on client.ip, from each
    of the three calls, and nothing counted."""
    service = await regulated_service(make_service)
    await service.add_account(nir(760))
    login_id = (await service.login(nir(760))).code_required.login_id
    bogus = auth_pb2.ClientInfo(ip="203.0.113.7, 10.0.0.1")

    refusals = [
        await refused(service.login(nir(760), password="faux", client=bogus)),
        await refused(
            service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id, client=bogus))
        ),
        await refused(
            service.portal.VerifyCode(
                auth_pb2.VerifyCodeRequest(login_id=login_id, code="000000", client=bogus)
            )
        ),
    ]

    for refusal in refusals:
        assert (refusal.code, refusal.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        )
        violations = refusal.detail(error_details_pb2.BadRequest).field_violations
        assert [violation.field for violation in violations] == ["client.ip"]
    status = await service.advisor.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(760)))
    assert (status.password_failures, status.code_failures, status.codes_sent_in_window) == (
        0,
        0,
        0,
    )
