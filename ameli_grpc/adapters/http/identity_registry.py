"""``IdentityRegistry`` over HTTP: the remote RFI, with one timeout and a small cache.

Contract of the remote registry:

- ``POST {base_url}/v1/affiliations/lookup`` with the JSON body
  ``{"nir": "<13 characters>"}`` (a POST, so that the NIR never appears in a
  URL or an access log) answers ``200`` with the JSON object
  ``{"status": "affiliated" | "pending" | "not_covered", "scheme": "<optional free text>"}``,
  or ``404`` with the JSON object ``{"status": "unknown"}`` when the NIR is
  unknown to the RFI: it has no caisse de rattachement, which is
  ``NOT_COVERED`` (guide, case 7).
- ``GET {base_url}/health`` answers 2xx while the registry is up.

Anything else (no complete answer within ``timeout`` seconds, a connection
error, a redirect, a 5xx, any other 4xx, a 404 without that exact body — a
wrong route, a proxy's error page, an empty body —, a body that is not JSON
or names an unknown status) raises ``DependencyUnavailable``, never a guessed
affiliation: an outage or a misconfiguration of the RFI fails closed.

Only those definitive answers are cached (``AffiliationCache``: ``cache_ttl``
seconds, 0 for none, at most ``cache_size`` entries). Concurrent lookups of one
NIR share the request in flight.
Logs carry the outcome and the duration, never the NIR nor the RFI's body.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import structlog

from ameli_grpc.adapters.affiliation_cache import DEFAULT_SIZE, AffiliationCache, cache_key
from ameli_grpc.adapters.outages import map_outages, type_name
from ameli_grpc.domain.errors import DependencyUnavailable
from ameli_grpc.domain.model import Affiliation

_log = structlog.get_logger(__name__)

_LOOKUP_PATH = "/v1/affiliations/lookup"
_HEALTH_PATH = "/health"
_MAX_BODY_BYTES = 64 * 1024  # an answer is a few dozen bytes; more is not the RFI talking
_UNKNOWN_NIR_STATUS = "unknown"  # the body of the 404 for a NIR the RFI does not know


class _UnusableAnswer(Exception):
    """The RFI answered, but not with something this contract can read (the text is ours)."""


_OUTAGES = (httpx.HTTPError, OSError, TimeoutError, _UnusableAnswer)


def _describe(error: BaseException) -> str:
    """Our own texts or the exception's type: the RFI's words might quote the NIR."""
    return str(error) if isinstance(error, _UnusableAnswer) else type_name(error)


class HttpIdentityRegistry:
    """The ``IdentityRegistry`` port on the remote RFI (contract in the module docstring)."""

    _in_flight: dict[str, asyncio.Task[Affiliation]]

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        cache_ttl: float,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        cache_size: int = DEFAULT_SIZE,
    ) -> None:
        if timeout <= 0:
            raise ValueError("RFI: the timeout must be > 0")
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("the RFI URL must be an absolute http(s) URL")
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)
        self._cache = AffiliationCache(cache_ttl, cache_size, clock)
        self._in_flight = {}

    async def affiliation(self, nir: str) -> Affiliation:
        key = cache_key(nir)
        cached = self._cache.get(key)
        if cached is not None:
            _log.debug("rfi_lookup", outcome=cached.value, source="cache")
            return cached
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.create_task(self._lookup(nir, key))
            self._in_flight[key] = task
            task.add_done_callback(lambda done: self._settled(key, done))
        # Shielded: a caller that gives up must not cancel the lookup others wait for.
        return await asyncio.shield(task)

    async def ping(self) -> None:
        """Raise ``DependencyUnavailable`` unless ``GET /health`` answers 2xx in time."""
        with map_outages("rfi", _OUTAGES):
            async with asyncio.timeout(self._timeout):
                response = await self._client.get(self._base_url + _HEALTH_PATH)
            if not response.is_success:  # inside: an answer that is not 2xx is an outage too
                raise DependencyUnavailable("rfi", f"health check answered {response.status_code}")

    async def aclose(self) -> None:
        """Close the HTTP client if this registry created it (an injected one is the caller's)."""
        if self._owns_client:
            await self._client.aclose()

    async def _lookup(self, nir: str, key: str) -> Affiliation:
        started = time.perf_counter()
        try:
            with map_outages("rfi", _OUTAGES, describe=_describe):
                async with asyncio.timeout(self._timeout):
                    status_code, body = await self._post(nir)
                affiliation = _read_answer(status_code, body)
        except DependencyUnavailable as error:
            _log.warning(
                "rfi_lookup_failed",
                dependency="rfi",
                error=error.detail,
                duration_ms=_ms_since(started),
            )
            raise
        _log.info("rfi_lookup", outcome=affiliation.value, duration_ms=_ms_since(started))
        self._cache.remember(key, affiliation)
        return affiliation

    async def _post(self, nir: str) -> tuple[int, bytes]:
        url = self._base_url + _LOOKUP_PATH
        async with self._client.stream("POST", url, json={"nir": nir}) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _MAX_BODY_BYTES:
                    raise _UnusableAnswer("body_too_large")
            return response.status_code, bytes(body)

    def _settled(self, key: str, task: asyncio.Task[Affiliation]) -> None:
        self._in_flight.pop(key, None)
        if not task.cancelled():
            # Retrieved, so that a lookup all of whose callers gave up warns of nothing.
            task.exception()


def _read_answer(status_code: int, body: bytes) -> Affiliation:
    if status_code == httpx.codes.NOT_FOUND:
        # Only the registry's own answer means "unknown NIR": a 404 of a wrong route or of
        # a proxy in between would otherwise refuse every insured person as not covered.
        if _status_of(body) == _UNKNOWN_NIR_STATUS:
            return Affiliation.NOT_COVERED
        raise _UnusableAnswer("http_404")
    if status_code != httpx.codes.OK:
        raise _UnusableAnswer(f"http_{status_code}")
    try:
        return Affiliation(_status_of(body))
    except (ValueError, TypeError) as error:
        raise _UnusableAnswer("unreadable_answer") from error


def _status_of(body: bytes) -> object:
    """The ``status`` member of a JSON object body; None for any other body."""
    try:
        answer = json.loads(body)
    # RecursionError: a deeply nested body is no answer either.
    except (ValueError, RecursionError):
        return None
    return answer.get("status") if isinstance(answer, dict) else None


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
