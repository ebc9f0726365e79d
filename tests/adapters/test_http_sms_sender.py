"""The HTTP SMS sender against a real in-process HTTP server playing the SMS gateway."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from ameli_grpc.adapters.http.sms_sender import HttpSmsSender, e164_phone
from ameli_grpc.domain.errors import DependencyUnavailable
from ameli_grpc.domain.messages import provisional_code_sms
from tests.support.http_gateway import GatewayTestServer, gateway_server
from tests.support.mail import free_port

PHONE = "06 12 34 56 78"
E164 = "+33612345678"
CODE = "K7P2Q9XW"
API_KEY = "sms-test-key-0123456789"


@asynccontextmanager
async def sender(url: str, **overrides: Any) -> AsyncIterator[HttpSmsSender]:
    options: dict[str, Any] = {"api_key": API_KEY, "timeout": 2.0}
    options.update(overrides)
    opened = HttpSmsSender(url, **options)
    try:
        yield opened
    finally:
        await opened.aclose()


@contextmanager
def unavailable_within(seconds: float) -> Iterator[pytest.ExceptionInfo[DependencyUnavailable]]:
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable) as raised:
        yield raised
    assert time.monotonic() - started < seconds
    assert raised.value.__cause__ is not None
    assert CODE not in str(raised.value)


@pytest.fixture
async def gateway() -> AsyncIterator[GatewayTestServer]:
    async with gateway_server() as running:
        yield running


async def test_accepted_sms_is_posted_as_json(gateway: GatewayTestServer) -> None:
    """A 202 is a sent SMS: one POST /v1/messages with the E.164 number, sender, text, bearer."""
    async with sender(gateway.url + "/") as sms:
        await sms.send_provisional_code(PHONE, CODE, 60)

    (request,) = gateway.received
    assert (request.method, request.target) == ("POST", "/v1/messages")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.json() == {
        "to": E164,
        "from": "AMELI",
        "text": provisional_code_sms(CODE, timedelta(minutes=60)),
    }


@pytest.mark.parametrize("status", [200, 201])
async def test_200_and_201_are_accepted_too(gateway: GatewayTestServer, status: int) -> None:
    """The gateway may also accept with 200 or 201."""
    gateway.status = status
    async with sender(gateway.url) as sms:
        await sms.send_provisional_code(PHONE, CODE, 60)
    assert len(gateway.received) == 1


async def test_no_api_key_sends_no_authorization(gateway: GatewayTestServer) -> None:
    """Without an API key there is no Authorization header; the sender id is configurable."""
    async with sender(gateway.url, api_key=None, sender_id="CPAM") as sms:
        await sms.send_provisional_code(PHONE, CODE, 60)

    (request,) = gateway.received
    assert "authorization" not in request.headers
    assert request.json()["from"] == "CPAM"


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("06 12 34 56 78", "+33612345678"),
        ("07.81.23.45.67", "+33781234567"),
        ("0690 12 34 56", "+590690123456"),
        ("0694-20-12-34", "+594694201234"),
        ("0696 20 12 34", "+596696201234"),
        ("0692 12 34 56", "+262692123456"),
        ("0639 01 23 45", "+262639012345"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("+590 (690) 12 34 56", "+590690123456"),
        ("0033 6 12 34 56 78", "+33612345678"),
    ],
)
def test_phone_is_sent_in_e164(phone: str, expected: str) -> None:
    """A national mobile gets the country code of its region, overseas too; + and 00 are read."""
    assert e164_phone(phone) == expected


@pytest.mark.parametrize(
    ("phone", "complaint"),
    [
        (" - ", "not a phone number"),
        ("06 12 34", "not a valid phone number"),
        ("01 23 45 67 89", "not a mobile number"),
        ("0590 20 12 34", "not a mobile number"),
    ],
)
async def test_a_phone_that_is_not_a_mobile_is_refused_before_sending(
    gateway: GatewayTestServer, phone: str, complaint: str
) -> None:
    """Garbage or a landline is refused without asking the gateway, and never quoted."""
    async with sender(gateway.url) as sms:
        with pytest.raises(ValueError, match=complaint) as raised:
            await sms.send_provisional_code(phone, CODE, 60)
    assert gateway.received == []
    assert phone.strip() not in str(raised.value)


async def test_an_overseas_mobile_is_sent_with_its_own_country_code(
    gateway: GatewayTestServer,
) -> None:
    """A Guadeloupe mobile on file in national form goes to +590, not +33; the log masks it."""
    async with sender(gateway.url) as sms:
        with capture_logs() as logs:
            await sms.send_provisional_code("0690 12 34 56", CODE, 60)

    (request,) = gateway.received
    assert request.json()["to"] == "+590690123456"
    (sent,) = [log for log in logs if log["event"] == "provisional_code_sms_sent"]
    assert sent["to"] == "06******56"


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param((500, '{"error": "boom"}'), id="500"),
        pytest.param((503, ""), id="503"),
        pytest.param((400, '{"error": "invalid number"}'), id="400"),
        pytest.param((401, ""), id="401"),
    ],
)
async def test_refused_sms_is_unavailable(gateway: GatewayTestServer, answer: Any) -> None:
    """Any status but 200, 201 or 202 is an SMS not sent."""
    gateway.status, gateway.body = answer
    async with sender(gateway.url) as sms:
        with unavailable_within(2):
            await sms.send_provisional_code(PHONE, CODE, 60)


@pytest.mark.parametrize("follow_redirects", [False, True])
async def test_redirect_is_unavailable_and_not_followed(
    gateway: GatewayTestServer, follow_redirects: bool
) -> None:
    """A redirect is a failure and is never followed, even by an injected client that would."""
    gateway.status, gateway.body = 307, ""
    gateway.headers["Location"] = "/v1/elsewhere"
    async with (
        httpx.AsyncClient(follow_redirects=follow_redirects) as client,
        sender(gateway.url, client=client) as sms,
    ):
        with unavailable_within(2):
            await sms.send_provisional_code(PHONE, CODE, 60)
    assert [request.target for request in gateway.received] == ["/v1/messages"]


async def test_hanging_gateway_is_unavailable_after_the_timeout() -> None:
    """A gateway that accepts the connection but never answers fails once the timeout is spent."""
    async with gateway_server(hang=True) as hanging, sender(hanging.url, timeout=0.3) as sms:
        with unavailable_within(0.8):
            await sms.send_provisional_code(PHONE, CODE, 60)


async def test_slow_gateway_is_bounded_by_the_timeout(gateway: GatewayTestServer) -> None:
    """A gateway slower than the timeout fails once the timeout is spent, not when it answers."""
    gateway.delay = 0.6
    async with sender(gateway.url, timeout=0.3) as sms:
        with unavailable_within(0.55):
            await sms.send_provisional_code(PHONE, CODE, 60)


async def test_closed_port_is_unavailable_at_once() -> None:
    """A gateway that refuses the connection makes the send unavailable at once."""
    async with sender(f"http://127.0.0.1:{free_port()}") as sms:
        with unavailable_within(1):
            await sms.send_provisional_code(PHONE, CODE, 60)


async def test_logs_one_line_per_send_never_the_phone_or_code(gateway: GatewayTestServer) -> None:
    """Each send logs one line with the masked phone and the outcome; never the number or code."""
    async with sender(gateway.url) as sms:
        with capture_logs() as logs:
            await sms.send_provisional_code(PHONE, CODE, 60)
            gateway.status, gateway.body = 500, f'{{"error": "cannot send {CODE} to {E164}"}}'
            with pytest.raises(DependencyUnavailable):
                await sms.send_provisional_code(PHONE, CODE, 60)

    assert [(entry["event"], entry.get("status", entry.get("error"))) for entry in logs] == [
        ("provisional_code_sms_sent", 202),
        ("provisional_code_sms_failed", "http_500"),
    ]
    assert {entry["to"] for entry in logs} == {"06******78"}
    assert all("duration_ms" in entry for entry in logs)
    for secret in (CODE, PHONE, E164, "0612345678", "612345678", API_KEY):
        assert secret not in repr(logs)


async def test_aclose_leaves_an_injected_client_open(gateway: GatewayTestServer) -> None:
    """A client given to the sender belongs to the caller: ``aclose`` does not close it."""
    async with httpx.AsyncClient() as client:
        async with sender(gateway.url, client=client) as sms:
            await sms.send_provisional_code(PHONE, CODE, 60)
        assert not client.is_closed


@pytest.mark.parametrize("url", ["", "127.0.0.1:8080", "ftp://sms.example/"])
def test_rejects_a_url_that_is_not_http(url: str) -> None:
    """A misconfigured gateway URL stops the service at start, not at the first reset."""
    with pytest.raises(ValueError, match="http"):
        HttpSmsSender(url, api_key=None, timeout=1.0)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"timeout": 0.0}, id="zero-timeout"),
        pytest.param({"sender_id": " "}, id="blank-sender"),
        pytest.param({"api_key": "key\r\nX-Injected: 1"}, id="key-with-newline"),
    ],
)
def test_rejects_a_bad_setting(options: dict[str, Any]) -> None:
    """A bad timeout, sender id or API key stops the service at start, without echoing the key."""
    settings: dict[str, Any] = {"api_key": API_KEY, "timeout": 1.0, **options}
    with pytest.raises(ValueError, match="SMS") as raised:
        HttpSmsSender("http://127.0.0.1:9", **settings)
    assert "Injected" not in str(raised.value)
