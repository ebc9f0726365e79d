"""A tiny in-process HTTP/1.1 server on 127.0.0.1 for the tests of the HTTP adapters.

Plain asyncio streams (keep-alive, ``Content-Length`` bodies), no framework.
``HttpTestServer`` holds what every fake shares and can be switched while it
runs: ``hang`` reads each request and never answers, ``delay`` waits before
answering, ``received`` keeps every request as it came. A fake overrides
``respond`` (and ``record``); ``http_test_server(state)`` runs it for the
duration of a block.

``gateway_server()`` plays the SMS gateway of ``HttpSmsSender``: it answers
every request with ``status`` and ``body`` (plus ``headers``, e.g. a
``Location``). The fake RFI (``tests.support.rfi``) is built on the same server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

Answer = tuple[int, str]
_Server = TypeVar("_Server", bound="HttpTestServer")


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    target: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpTestServer:
    url: str = ""
    hang: bool = False
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # added to every answer
    received: list[ReceivedRequest] = field(default_factory=list)

    def record(self, request: ReceivedRequest) -> None:
        self.received.append(request)

    def respond(self, request: ReceivedRequest) -> Answer:
        return 404, ""


@dataclass(kw_only=True)
class GatewayTestServer(HttpTestServer):
    status: int = 202
    body: str = '{"id": "msg-0001"}'

    def respond(self, request: ReceivedRequest) -> Answer:
        return self.status, self.body


async def read_request(reader: asyncio.StreamReader) -> ReceivedRequest | None:
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


def encode_response(status: int, body: str, headers: Mapping[str, str]) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Whatever"
    payload = body.encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n"
        f"{extra}\r\n"
    )
    return head.encode("latin-1") + payload


async def _serve(
    server: HttpTestServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while (request := await read_request(reader)) is not None:
            server.record(request)
            if server.hang:
                await asyncio.Event().wait()  # until the test ends and cancels this connection
            if server.delay:
                await asyncio.sleep(server.delay)
            writer.write(encode_response(*server.respond(request), server.headers))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass  # the client went away mid-request: nothing to answer
    finally:
        writer.close()


@asynccontextmanager
async def http_test_server(state: _Server) -> AsyncIterator[_Server]:
    """Serve ``state`` on a free port of 127.0.0.1 (its ``url``) for the duration of the block."""
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


@asynccontextmanager
async def gateway_server(
    status: int = 202, *, hang: bool = False
) -> AsyncIterator[GatewayTestServer]:
    """Run the fake SMS gateway, answering ``status`` to every request."""
    async with http_test_server(GatewayTestServer(status=status, hang=hang)) as server:
        yield server
