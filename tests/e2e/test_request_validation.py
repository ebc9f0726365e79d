"""The request's form is checked before the call has any effect (SPEC §6, §8), over the wire.

The cases that broke on PostgreSQL (which refuses a NUL that SQLite stores)
run on both backends: a refusal must come first on each.
"""

from __future__ import annotations

import re
from typing import Any

import grpc
import pytest
import structlog
from ameli.auth.v1 import auth_pb2
from google.rpc import error_details_pb2

from tests.e2e.footprint import SERVICE, footprint, key_for
from tests.e2e.harness import ADVISOR_KEY, ServiceUnderTest, nir, refused

INVALID_REQUEST = "La demande est incomplète ou invalide."
# Bytes that are not a request: wire garbage, a truncated field, invalid UTF-8 in field 1
# (a string in every request), a field number 0.
MALFORMED = [b"\xff\xff", b"\x0a\x05ab", b"\x0a\x02\xff\xfe", b"\x00\x01"]


def bad_request_fields(refusal: object) -> list[str]:
    detail = refusal.detail(error_details_pb2.BadRequest)  # type: ignore[attr-defined]
    return [violation.field for violation in detail.field_violations]


async def test_malformed_bytes_are_an_invalid_request_on_every_rpc(
    service: ServiceUnderTest,
) -> None:
    """Bytes that are not the message get INVALID_ARGUMENT / INVALID_REQUEST with the rich status
    and the French text, never UNKNOWN naming the parser; the refusal is logged as one."""
    channel = service.channel()
    for method in SERVICE.methods:
        key = key_for(method.name)
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            f"/{SERVICE.full_name}/{method.name}"
        )
        metadata = (("authorization", f"Bearer {key or ADVISOR_KEY}"),)
        for payload in MALFORMED:
            with structlog.testing.capture_logs() as logs:
                refusal = await refused(call(payload, metadata=metadata))
            if key is None:  # no role may call it yet: refused before its bytes are read
                assert refusal.reason == "CALLER_NOT_ALLOWED", method.name
                continue
            assert (refusal.code, refusal.reason) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_REQUEST",
            ), (method.name, payload)
            assert refusal.message == INVALID_REQUEST
            assert not re.search("decode|pars|error", refusal.status.message, re.IGNORECASE)
            rpc = next(line for line in logs if line["event"] == "rpc")
            assert (rpc["method"], rpc["outcome"]) == (method.name, "INVALID_REQUEST")
            (malformed,) = (line for line in logs if line["event"] == "malformed_request")
            assert malformed["error"] == "DecodeError"
    status = await service.portal.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(80)))
    assert not status.locked  # the server goes on


async def test_every_offending_field_is_named(service: ServiceUnderTest) -> None:
    """All the bad fields of a request are named in one BadRequest, and nothing is counted."""
    await service.add_account(nir(81))
    before = await footprint(service, nir(81))
    bad: dict[str, Any] = dict(
        password="faux\x00",
        device_token="t" * 257,
        channel=99,
        client=auth_pb2.ClientInfo(ip="192.0.2.300", user_agent="Mozilla\n"),
    )

    refusal = await refused(service.login(nir(81), **bad))
    with_nir = await refused(service.login(nir(81)[:-1] + "\x00", **bad))

    assert (refusal.code, refusal.reason, refusal.message) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
        INVALID_REQUEST,
    )
    fields = ["password", "channel", "device_token", "client.ip", "client.user_agent"]
    assert bad_request_fields(refusal) == fields
    # A NIR among them: INVALID_NIR, what the person can fix first (SPEC §2, step 1).
    assert (with_nir.reason, bad_request_fields(with_nir)) == ("INVALID_NIR", ["nir", *fields])
    assert await footprint(service, nir(81)) == before


@pytest.mark.parametrize(
    ("advisor_id", "reason", "field"),
    [("a" * 256, "messagerie perdue", "advisor_id"), ("conseiller-3646", "motif\x00", "reason")],
    ids=["256-char advisor id", "NUL in reason"],
)
async def test_a_bad_advisor_field_resets_nothing(
    service: ServiceUnderTest, advisor_id: str, reason: str, field: str
) -> None:
    """ResetAccount with a 256-character advisor id or a NUL in its reason (which PostgreSQL
    cannot store) is INVALID_REQUEST: the account stays, no SMS, no audit row."""
    await service.add_account(nir(82), mobile_phone="0612345678")
    before = await footprint(service, nir(82))
    request = auth_pb2.ResetAccountRequest(
        nir=nir(82), advisor_id=advisor_id, reason=reason, send_provisional_code=True
    )

    refusal = await refused(service.advisor.ResetAccount(request))

    assert (refusal.code, refusal.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert bad_request_fields(refusal) == [field]
    after = await footprint(service, nir(82))
    assert after == before
    assert (after.rows_of("accounts"), after.rows_of("audit_events"), after.sms) == (1, 0, 0)
    # The same reset with good fields does all of it.
    request.advisor_id, request.reason = "conseiller-3646", "messagerie perdue"
    assert (await service.advisor.ResetAccount(request)).provisional_code_sent
    done = await footprint(service, nir(82))
    assert (done.rows_of("accounts"), done.rows_of("audit_events"), done.sms) == (
        0,
        2,
        1,
    )  # account_reset, then provisional_code_sent


async def test_a_nul_in_the_user_agent_keeps_the_provisional_code(
    service: ServiceUnderTest,
) -> None:
    """A provisional code typed with a NUL in client.user_agent is INVALID_REQUEST and is not
    used up: the same code works afterwards (on PostgreSQL too)."""
    await service.add_account(nir(83), mobile_phone="0612345678")
    request = auth_pb2.ResetAccountRequest(
        nir=nir(83), advisor_id="conseiller-3646", reason="appel", send_provisional_code=True
    )
    await service.advisor.ResetAccount(request)
    sms = next(service.settings.outbox_dir.glob("*.sms.txt")).read_text(encoding="utf-8")
    match = re.search(r"est ([A-Z0-9]{10})\.", sms)
    assert match, "the SMS carries the provisional code"
    provisional = match.group(1)
    before = await footprint(service, nir(83))

    nul = auth_pb2.ClientInfo(ip="192.0.2.7", user_agent="Mozilla/5.0\x00")
    refusal = await refused(service.login(nir(83), password=provisional, client=nul))

    assert (refusal.code, refusal.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert bad_request_fields(refusal) == ["client.user_agent"]
    assert await footprint(service, nir(83)) == before
    clean = auth_pb2.ClientInfo(ip="192.0.2.7", user_agent="Mozilla/5.0")
    setup = await service.login(nir(83), password=provisional, client=clean)
    assert setup.WhichOneof("result") == "account_setup_required"
