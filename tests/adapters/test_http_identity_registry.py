"""The HTTP identity registry against a real in-process HTTP server playing the RFI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from ameli_grpc.adapters.http.identity_registry import HttpIdentityRegistry
from ameli_grpc.domain.errors import DependencyUnavailable
from ameli_grpc.domain.model import Affiliation
from tests.support.mail import free_port
from tests.support.rfi import LOOKUP_PATH, RfiTestServer, rfi_server, status_answer

NIR = "1800175123456"
PENDING_NIR = "2850299123456"
OTHER_NIR = "1690733123456"
UNKNOWN_NIR = "2991275999999"
ANSWERS = {
    NIR: status_answer("affiliated", "Régime général"),
    PENDING_NIR: status_answer("pending"),
    OTHER_NIR: status_answer("not_covered", "MSA"),
}


class SteppedClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def registry(url: str, **overrides: Any) -> AsyncIterator[HttpIdentityRegistry]:
    options: dict[str, Any] = {"timeout": 2.0, "cache_ttl": 0.0}
    options.update(overrides)
    opened = HttpIdentityRegistry(url, **options)
    try:
        yield opened
    finally:
        await opened.aclose()


@contextmanager
def unavailable_within(seconds: float) -> Iterator[None]:
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable) as raised:
        yield
    assert time.monotonic() - started < seconds
    assert raised.value.__cause__ is not None


@pytest.fixture
async def server() -> AsyncIterator[RfiTestServer]:
    async with rfi_server(ANSWERS) as running:
        yield running


@pytest.mark.parametrize(
    ("nir", "expected"),
    [
        (NIR, Affiliation.AFFILIATED),
        (PENDING_NIR, Affiliation.PENDING),
        (OTHER_NIR, Affiliation.NOT_COVERED),
    ],
)
async def test_maps_the_three_statuses(
    server: RfiTestServer, nir: str, expected: Affiliation
) -> None:
    """Each of the RFI's three statuses becomes the affiliation of the same name."""
    async with registry(server.url) as rfi:
        assert await rfi.affiliation(nir) is expected


async def test_unknown_nir_is_not_covered(server: RfiTestServer) -> None:
    """The RFI's 404 {"status": "unknown"} (no caisse de rattachement) is NOT_COVERED, case 7."""
    async with registry(server.url) as rfi:
        assert await rfi.affiliation(UNKNOWN_NIR) is Affiliation.NOT_COVERED


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param((404, "<html><body>404 Not Found</body></html>"), id="html-page"),
        pytest.param((404, ""), id="empty-body"),
        pytest.param((404, '{"error": "unknown NIR"}'), id="other-json"),
        pytest.param((404, '{"status": "not_covered"}'), id="other-status"),
        pytest.param((404, '["unknown"]'), id="not-an-object"),
    ],
)
async def test_bare_404_is_unavailable_and_not_cached(server: RfiTestServer, answer: Any) -> None:
    """A 404 without the RFI's {"status": "unknown"} is an outage, and is not cached."""
    server.override = answer
    async with registry(server.url, cache_ttl=60.0) as rfi:
        with unavailable_within(2):
            await rfi.affiliation(NIR)
        server.override = None
        assert await rfi.affiliation(NIR) is Affiliation.AFFILIATED
    assert len(server.requests) == 2


async def test_wrong_route_is_unavailable(server: RfiTestServer) -> None:
    """A base URL pointing at the wrong route (a bare 404) never refuses anyone as not covered."""
    async with registry(server.url + "/wrong-prefix") as rfi:
        with unavailable_within(2):
            await rfi.affiliation(UNKNOWN_NIR)
    assert [request.target for request in server.received] == [f"/wrong-prefix{LOOKUP_PATH}"]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param((500, '{"error": "boom"}'), id="500"),
        pytest.param((503, ""), id="503"),
        pytest.param((400, '{"status": "not_covered"}'), id="400"),
        pytest.param((403, ""), id="403"),
        pytest.param((302, ""), id="redirect"),
        pytest.param((200, "<html>maintenance</html>"), id="garbage-body"),
        pytest.param((200, '{"status": "retired"}'), id="unknown-status"),
        pytest.param((200, '{"status": "unknown"}'), id="unknown-nir-with-200"),
        pytest.param((200, '{"scheme": "MSA"}'), id="no-status"),
        pytest.param((200, '["affiliated"]'), id="not-an-object"),
        pytest.param((200, "[" * 60_000), id="deeply-nested"),
        pytest.param((200, '{"status": "affiliated", "x": "' + "x" * 70_000 + '"}'), id="huge"),
    ],
)
async def test_unusable_answer_is_unavailable(server: RfiTestServer, answer: Any) -> None:
    """Any answer but a known status or the RFI's explicit 404 is an outage, never a guess."""
    server.override = answer
    async with registry(server.url) as rfi:
        with unavailable_within(2):
            await rfi.affiliation(NIR)


async def test_hanging_server_is_unavailable_after_the_timeout() -> None:
    """A registry that accepts the connection but never answers fails once the timeout is spent."""
    async with rfi_server(ANSWERS, hang=True) as hanging, registry(hanging.url, timeout=0.3) as rfi:
        with unavailable_within(0.8):
            await rfi.affiliation(NIR)


async def test_answers_again_once_the_server_recovers(server: RfiTestServer) -> None:
    """After a hang and a 500, the next lookup asks again and gets the real answer."""
    async with registry(server.url, timeout=0.3, cache_ttl=60.0) as rfi:
        server.hang = True
        with unavailable_within(0.8):
            await rfi.affiliation(NIR)
        server.hang, server.override = False, (500, "")
        with unavailable_within(2):
            await rfi.affiliation(NIR)
        server.override = None
        assert await rfi.affiliation(NIR) is Affiliation.AFFILIATED
    assert len(server.requests) == 3


async def test_closed_port_is_unavailable_at_once() -> None:
    """A registry that refuses the connection makes the lookup unavailable at once."""
    async with registry(f"http://127.0.0.1:{free_port()}") as rfi:
        with unavailable_within(1):
            await rfi.affiliation(NIR)


async def test_nir_travels_in_the_post_body_only(server: RfiTestServer) -> None:
    """The NIR is sent as the JSON body of a POST, never in the path, the query or a header."""
    async with registry(server.url + "/") as rfi:
        await rfi.affiliation(NIR)

    (request,) = server.received
    assert (request.method, request.target) == ("POST", LOOKUP_PATH)
    assert request.headers["content-type"] == "application/json"
    assert NIR not in repr(request.headers)
    assert server.requests == [{"nir": NIR}]


@pytest.mark.parametrize("nir", [NIR, UNKNOWN_NIR], ids=["affiliated", "404"])
async def test_second_lookup_within_the_ttl_is_cached(server: RfiTestServer, nir: str) -> None:
    """A definitive answer, the RFI's 404 included, is reused within the TTL: asked once."""
    clock = SteppedClock()
    async with registry(server.url, cache_ttl=60.0, clock=clock) as rfi:
        first = await rfi.affiliation(nir)
        clock.now += 59.9
        assert await rfi.affiliation(nir) is first
    assert len(server.requests) == 1


async def test_lookup_after_the_ttl_asks_again(server: RfiTestServer) -> None:
    """Once the TTL has passed the RFI is asked again, and its new answer is taken."""
    clock = SteppedClock()
    async with registry(server.url, cache_ttl=60.0, clock=clock) as rfi:
        assert await rfi.affiliation(PENDING_NIR) is Affiliation.PENDING
        server.answers = {PENDING_NIR: status_answer("affiliated")}
        clock.now += 60.0
        assert await rfi.affiliation(PENDING_NIR) is Affiliation.AFFILIATED
    assert len(server.requests) == 2


async def test_zero_ttl_disables_the_cache(server: RfiTestServer) -> None:
    """With a TTL of 0 every lookup asks the RFI."""
    async with registry(server.url, cache_ttl=0.0) as rfi:
        for _ in range(3):
            await rfi.affiliation(NIR)
    assert len(server.requests) == 3


async def test_errors_are_not_cached(server: RfiTestServer) -> None:
    """A failed lookup leaves nothing in the cache: the next one asks the RFI again."""
    server.override = (503, "")
    async with registry(server.url, cache_ttl=60.0) as rfi:
        with unavailable_within(2):
            await rfi.affiliation(NIR)
        server.override = None
        assert await rfi.affiliation(NIR) is Affiliation.AFFILIATED
        assert await rfi.affiliation(NIR) is Affiliation.AFFILIATED
    assert len(server.requests) == 2


async def test_cache_evicts_the_oldest_entry(server: RfiTestServer) -> None:
    """A full cache forgets its oldest answer first and keeps the newer ones."""
    async with registry(server.url, cache_ttl=60.0, cache_size=2) as rfi:
        for nir in (NIR, PENDING_NIR, OTHER_NIR, OTHER_NIR, PENDING_NIR, NIR):
            await rfi.affiliation(nir)
    assert [body["nir"] for body in server.requests] == [NIR, PENDING_NIR, OTHER_NIR, NIR]


async def test_cache_holds_no_nir(server: RfiTestServer) -> None:
    """The cache is keyed by a hash of the NIR, so the NIR is nowhere in the registry's state."""
    async with registry(server.url, cache_ttl=60.0) as rfi:
        await rfi.affiliation(NIR)
        assert NIR not in repr(vars(rfi))


async def test_concurrent_lookups_share_one_request(server: RfiTestServer) -> None:
    """Lookups of one NIR while a request for it is in flight wait for that request."""
    server.delay = 0.2
    async with registry(server.url) as rfi:
        results = await asyncio.gather(*(rfi.affiliation(NIR) for _ in range(5)))
    assert results == [Affiliation.AFFILIATED] * 5
    assert len(server.requests) == 1


async def test_caller_giving_up_does_not_cancel_the_others(server: RfiTestServer) -> None:
    """A caller cancelled mid-lookup leaves the shared request running for the other callers."""
    server.delay = 0.3
    async with registry(server.url) as rfi:
        patient = asyncio.create_task(rfi.affiliation(NIR))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(rfi.affiliation(NIR), 0.1)
        assert await patient is Affiliation.AFFILIATED
    assert len(server.requests) == 1


async def test_ping_passes_when_the_registry_is_up(server: RfiTestServer) -> None:
    """The health check passes when ``GET /health`` answers 2xx."""
    async with registry(server.url) as rfi:
        await rfi.ping()
    assert [(r.method, r.target) for r in server.received] == [("GET", "/health")]


async def test_ping_fails_when_the_registry_is_down(server: RfiTestServer) -> None:
    """The health check fails on a 503, on a silent registry and on a closed port."""
    server.health = (503, "")
    async with registry(server.url, timeout=0.3) as rfi:
        with pytest.raises(DependencyUnavailable, match="503"):
            await rfi.ping()
    async with registry(server.url, timeout=0.3) as rfi:
        server.hang = True
        with unavailable_within(0.8):
            await rfi.ping()
    async with registry(f"http://127.0.0.1:{free_port()}") as rfi:
        with unavailable_within(1):
            await rfi.ping()


async def test_logs_outcome_and_duration_never_the_nir(server: RfiTestServer) -> None:
    """Lookups log their outcome and duration, successes and failures alike, never the NIR."""
    async with registry(server.url, cache_ttl=60.0) as rfi:
        with capture_logs() as logs:
            await rfi.affiliation(NIR)
            await rfi.affiliation(NIR)
            await rfi.affiliation(UNKNOWN_NIR)
            server.override = (500, f'{{"error": "no such NIR {PENDING_NIR}"}}')
            with pytest.raises(DependencyUnavailable):
                await rfi.affiliation(PENDING_NIR)

    remote = [entry for entry in logs if "duration_ms" in entry]
    assert [(entry["event"], entry.get("outcome", entry.get("error"))) for entry in remote] == [
        ("rfi_lookup", "affiliated"),
        ("rfi_lookup", "not_covered"),
        ("rfi_lookup_failed", "http_500"),
    ]
    for nir in (NIR, UNKNOWN_NIR, PENDING_NIR):
        assert nir not in repr(logs)


async def test_aclose_leaves_an_injected_client_open(server: RfiTestServer) -> None:
    """A client given to the registry belongs to the caller: ``aclose`` does not close it."""
    async with httpx.AsyncClient() as client:
        async with registry(server.url, client=client) as rfi:
            assert await rfi.affiliation(NIR) is Affiliation.AFFILIATED
        assert not client.is_closed


@pytest.mark.parametrize("url", ["", "127.0.0.1:8080", "ftp://rfi.example/"])
def test_rejects_a_url_that_is_not_http(url: str) -> None:
    """A misconfigured RFI URL stops the service at start, not at the first login."""
    with pytest.raises(ValueError, match="http"):
        HttpIdentityRegistry(url, timeout=1.0, cache_ttl=0.0)
