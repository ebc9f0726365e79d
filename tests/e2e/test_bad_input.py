"""Bad input gets a clear status with its reason and French message; the server keeps serving."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc
import pytest
from ameli.auth.v1 import auth_pb2
from google.rpc import error_details_pb2

from tests.e2e.harness import ServiceUnderTest, nir, refused

# As large as a field can be within the 64 KiB message limit (AMELI_MAX_MESSAGE_BYTES).
HUGE = "9" * 60_000
MESSAGE_LIMIT = 64 * 1024
BAD_NIRS = [
    "",
    "1",
    "180017511200168",
    "18001751120016900",
    "1800175112001AB",
    HUGE,
    "１８００１７５１１２００１",
    "\x00" * 13,
    "253072C07300443",
]


@pytest.mark.parametrize("bad_nir", BAD_NIRS, ids=range(len(BAD_NIRS)))
async def test_bad_nirs_are_invalid_nir(service: ServiceUnderTest, bad_nir: str) -> None:
    """Malformed NIRs, wrong keys and huge strings are INVALID_NIR with a BadRequest detail."""
    refusal = await refused(service.login(bad_nir, password="x"))
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refusal.reason == "INVALID_NIR"
    assert refusal.message == (
        "Le numéro de sécurité sociale saisi n'est pas valide. Vérifiez votre saisie."
    )
    assert refusal.detail(error_details_pb2.BadRequest).field_violations[0].field == "nir"


async def test_empty_password_is_an_invalid_request(service: ServiceUnderTest) -> None:
    """An empty password is refused as a malformed request, not counted as a failure."""
    refusal = await refused(service.login(nir(61), password=""))
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refusal.reason == "INVALID_REQUEST"


async def test_huge_fields_are_refused_before_any_effect(service: ServiceUnderTest) -> None:
    """60 kB passwords, codes, tokens and login ids are INVALID_REQUEST naming the field, with
    nothing counted; well-formed unknown login ids stay LOGIN_NOT_FOUND; the service goes on."""
    await service.add_account(nir(62))
    login_id = (await service.login(nir(62))).code_required.login_id
    await service.request_code(login_id)
    calls: list[tuple[str, Awaitable[object]]] = [
        ("password", service.login(nir(62), password=HUGE)),
        ("device_token", service.login(nir(62), device_token=HUGE)),
        ("login_id", service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=HUGE))),
        (
            "login_id",
            service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=HUGE, code="1")),
        ),
        (
            "code",
            service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code=HUGE)),
        ),
    ]
    for field_name, call in calls:
        refusal = await refused(call)
        assert (refusal.code, refusal.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        )
        assert refusal.message == "La demande est incomplète ou invalide."
        violations = refusal.detail(error_details_pb2.BadRequest).field_violations
        assert [violation.field for violation in violations] == [field_name]
    status = await service.portal.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(62)))
    assert (status.password_failures, status.code_failures, status.codes_sent_in_window) == (
        0,
        0,
        1,
    )
    for unknown in ("", "inconnu", "a.b", "{x}.y", "é" * 50):
        refusal = await refused(
            service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=unknown, code="1"))
        )
        assert (refusal.code, refusal.reason) == (grpc.StatusCode.NOT_FOUND, "LOGIN_NOT_FOUND")
        assert refusal.message == "Votre session de connexion a expiré. Merci de vous reconnecter."
        assert (
            await refused(service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=unknown)))
        ).reason == "LOGIN_NOT_FOUND"
    assert (await service.login(nir(62))).WhichOneof("result") == "code_required"


@pytest.mark.parametrize(
    "password_bytes", [MESSAGE_LIMIT, 3 * 1024 * 1024], ids=["just over 64 KiB", "3 MiB"]
)
async def test_oversized_messages_are_refused_by_the_transport(
    service: ServiceUnderTest, password_bytes: int
) -> None:
    """A request over the 64 KiB message limit is refused by gRPC without reaching the service:
    no rich status, nothing counted; the server goes on."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await service.login(nir(63), password="x" * password_bytes)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "grpc-status-details-bin" not in raised.value.trailing_metadata()
    status = await service.portal.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(63)))
    assert status.password_failures == 0
    # Within the limit, the service answers: 1024 characters at most (server/validation.py).
    fits = await refused(service.login(nir(63), password="x" * (MESSAGE_LIMIT - 100)))
    assert fits.reason == "INVALID_REQUEST"
    status = await service.portal.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(63)))
    assert status.password_failures == 0


async def test_advisor_fields_are_required(service: ServiceUnderTest) -> None:
    """ResetAccount without an advisor id or a reason is an invalid request."""
    await service.add_account(nir(64))
    refusal = await refused(
        service.advisor.ResetAccount(auth_pb2.ResetAccountRequest(nir=nir(64), reason="r"))
    )
    assert refusal.reason == "INVALID_REQUEST"
    assert refusal.detail(error_details_pb2.BadRequest).field_violations[0].field == "advisor_id"


BAD_USER_AGENTS = {"NUL": "Mozilla\x00", "newline": "Mozilla\nX", "513 chars": "M" * 513}


@pytest.mark.parametrize("agent", BAD_USER_AGENTS.values(), ids=BAD_USER_AGENTS.keys())
async def test_a_bad_user_agent_is_refused_before_any_effect(
    service: ServiceUnderTest, agent: str
) -> None:
    """A user agent with a control character or too long: INVALID_REQUEST on every login RPC,
    before anything is counted, sent or stored (on PostgreSQL too)."""
    await service.add_account(nir(70))
    client = auth_pb2.ClientInfo(ip="192.0.2.7", user_agent=agent)
    login_id = (await service.login(nir(70))).code_required.login_id
    calls: list[Awaitable[object]] = [
        service.login(nir(70), client=client),
        service.login(nir(70), password="faux", client=client),
        service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id, client=client)),
        service.portal.VerifyCode(
            auth_pb2.VerifyCodeRequest(login_id=login_id, code="000000", client=client)
        ),
    ]
    for call in calls:
        refusal = await refused(call)
        assert (refusal.code, refusal.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
        )
        violation = refusal.detail(error_details_pb2.BadRequest).field_violations[0]
        assert violation.field == "client.user_agent"
    status = await service.portal.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(70)))
    assert (status.password_failures, status.code_failures, status.codes_sent_in_window) == (
        0,
        0,
        0,
    )
    assert service.smtp.deliveries == []


async def test_an_unknown_channel_is_an_invalid_request(service: ServiceUnderTest) -> None:
    """A channel value the contract does not know is refused, naming the field; nothing counted."""
    await service.add_account(nir(71))
    refusal = await refused(service.login(nir(71), password="faux", channel=99))
    assert (refusal.code, refusal.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert refusal.detail(error_details_pb2.BadRequest).field_violations[0].field == "channel"
    status = await service.portal.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(71)))
    assert status.password_failures == 0
