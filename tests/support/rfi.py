"""An in-process HTTP/1.1 server playing the remote RFI, for the ``HttpIdentityRegistry`` tests.

``rfi_server(answers)`` listens on 127.0.0.1 with plain asyncio streams (keep-alive,
``Content-Length`` bodies) and answers ``POST /v1/affiliations/lookup`` from
``answers``: a NIR → ``(status, body)`` mapping (a NIR absent from it gets 404),
or a callable taking the NIR. ``GET /health`` answers ``health``. The behaviour
can be switched while it runs: ``hang`` reads each request and never answers,
``override`` answers every request with one ``(status, body)``, ``delay`` waits
before answering. ``requests`` keeps the parsed JSON body of every lookup,
``received`` every request as it came.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

LOOKUP_PATH = "/v1/affiliations/lookup"
HEALTH_PATH = "/health"

Answer = tuple[int, str]
Answers = Mapping[str, Answer] | Callable[[str], Answer]


def status_answer(status: str, scheme: str | None = None) -> Answer:
    """A 200 answer of the RFI naming ``status`` (and a scheme, if given)."""
    body: dict[str, str] = {"status": status}
    if scheme is not None:
        body["scheme"] = scheme
    return 200, json.dumps(body)


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RfiTestServer:
    url: str
    answers: Answers
    hang: bool = False
    override: Answer | None = None
    delay: float = 0.0
    health: Answer = (200, '{"status": "up"}')
    requests: list[Any] = field(default_factory=list)
    received: list[ReceivedRequest] = field(default_factory=list)

    def respond(self, request: ReceivedRequest) -> Answer:
        if self.override is not None:
            return self.override
        if (request.method, request.target) == ("GET", HEALTH_PATH):
            return self.health
        if (request.method, request.target) == ("POST", LOOKUP_PATH):
            nir = json.loads(request.body)["nir"]
            if callable(self.answers):
                return self.answers(nir)
            return self.answers.get(nir, (404, '{"error": "unknown NIR"}'))
        return 404, ""


async def _read_request(reader: asyncio.StreamReader) -> ReceivedRequest | None:
    """The next request of the connection, or None once the client closed it."""
    line = await reader.readline()
    if not line.strip():
        return None
    method, target, _version = line.decode("latin-1").split()
    headers: dict[str, str] = {}
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return ReceivedRequest(method, target, headers, body)


def _response(status: int, body: str) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Whatever"
    payload = body.encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + payload


async def _serve(
    server: RfiTestServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while (request := await _read_request(reader)) is not None:
            server.received.append(request)
            if request.target == LOOKUP_PATH:
                with contextlib.suppress(ValueError):
                    server.requests.append(json.loads(request.body))
            if server.hang:
                await asyncio.Event().wait()  # until the test ends and cancels this connection
            if server.delay:
                await asyncio.sleep(server.delay)
            writer.write(_response(*server.respond(request)))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass  # the client went away mid-request: nothing to answer
    finally:
        writer.close()


@asynccontextmanager
async def rfi_server(answers: Answers, *, hang: bool = False) -> AsyncIterator[RfiTestServer]:
    """Run the fake RFI on a free port of 127.0.0.1 for the duration of the block."""
    state = RfiTestServer(url="", answers=answers, hang=hang)
    connections: set[asyncio.Task[Any]] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await _serve(state, reader, writer)
        finally:
            connections.discard(task)

    listener = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        listener.close()
        # Hung or idle keep-alive connections would otherwise outlive the test.
        for task in list(connections):
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        await listener.wait_closed()
