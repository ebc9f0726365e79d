"""An in-process HTTP/1.1 server playing the remote RFI, for the ``HttpIdentityRegistry`` tests.

``rfi_server(answers)`` listens on 127.0.0.1 (``tests.support.http_gateway``)
and answers ``POST /v1/affiliations/lookup`` from ``answers``: a NIR →
``(status, body)`` mapping (a NIR absent from it gets the registry's explicit
``404 {"status": "unknown"}``), or a callable taking the NIR. ``GET /health``
answers ``health``; any other route a bare 404. The behaviour can be switched
while it runs: ``hang`` reads each request and never answers, ``override``
answers every request with one ``(status, body)``, ``delay`` waits before
answering. ``requests`` keeps the parsed JSON body of every lookup,
``received`` every request as it came.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.http_gateway import Answer, HttpTestServer, ReceivedRequest, http_test_server

LOOKUP_PATH = "/v1/affiliations/lookup"
HEALTH_PATH = "/health"
UNKNOWN_NIR_ANSWER: Answer = (404, '{"status": "unknown"}')

Answers = Mapping[str, Answer] | Callable[[str], Answer]


def status_answer(status: str, scheme: str | None = None) -> Answer:
    """A 200 answer of the RFI naming ``status`` (and a scheme, if given)."""
    body: dict[str, str] = {"status": status}
    if scheme is not None:
        body["scheme"] = scheme
    return 200, json.dumps(body)


@dataclass(kw_only=True)
class RfiTestServer(HttpTestServer):
    answers: Answers
    override: Answer | None = None
    health: Answer = (200, '{"status": "up"}')
    requests: list[Any] = field(default_factory=list)

    def record(self, request: ReceivedRequest) -> None:
        super().record(request)
        if request.target == LOOKUP_PATH:
            with contextlib.suppress(ValueError):
                self.requests.append(request.json())

    def respond(self, request: ReceivedRequest) -> Answer:
        if self.override is not None:
            return self.override
        if (request.method, request.target) == ("GET", HEALTH_PATH):
            return self.health
        if (request.method, request.target) == ("POST", LOOKUP_PATH):
            nir = request.json()["nir"]
            if callable(self.answers):
                return self.answers(nir)
            return self.answers.get(nir, UNKNOWN_NIR_ANSWER)
        return 404, ""


@asynccontextmanager
async def rfi_server(answers: Answers, *, hang: bool = False) -> AsyncIterator[RfiTestServer]:
    """Run the fake RFI on a free port of 127.0.0.1 for the duration of the block."""
    async with http_test_server(RfiTestServer(answers=answers, hang=hang)) as server:
        yield server
