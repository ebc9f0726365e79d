"""Tracing (SPEC §9, the ``otel`` extra): a span per RPC, with its SQL, Redis and SMTP calls."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pytest
import structlog
from ameli.auth.v1 import auth_pb2

from ameli_grpc.adapters import tracing
from ameli_grpc.config import Settings
from ameli_grpc.observability import describe, start_observability
from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import EMAIL, PASSWORD, nir
from tests.support.rfi import rfi_server

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

# Under CI the extra is installed by `make test`: the test then runs (and fails without it).
needs_otel = pytest.mark.skipif(
    not tracing.installed() and os.environ.get("CI") != "true",
    reason="the otel extra is not installed",
)


@pytest.fixture
def spans() -> Iterator[Any]:
    """Tracing on, into an in-memory exporter; off again after the test."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    started = tracing.Tracing.start(provider)
    try:
        yield exporter
    finally:
        started.close()


def under(span: ReadableSpan, everything: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    """The spans below ``span``: its children, theirs, and so on."""
    by_id = {each.context.span_id: each for each in everything if each.context is not None}
    assert span.context is not None
    found = []
    for each in everything:
        parent = each.parent
        while parent is not None:
            if parent.span_id == span.context.span_id:
                found.append(each)
                break
            above = by_id.get(parent.span_id)
            parent = above.parent if above is not None else None
    return found


def rpc_span(everything: Sequence[ReadableSpan], method: str) -> ReadableSpan:
    (found,) = [s for s in everything if s.name == f"/ameli.auth.v1.AuthService/{method}"]
    return found


@needs_otel
async def test_a_login_is_traced_with_its_sql_redis_and_smtp_calls(
    spans: Any, make_service: ServiceFactory, backend: str
) -> None:
    """CheckCredentials, RequestCode and VerifyCode each have a server span; the database's
    statements, Redis' commands and the SMTP send are spans under the RPC that made them (the
    health checks make none); no span carries the NIR, the email, the password or the code."""
    service = await make_service()
    await service.add_account(nir(1))
    spans.clear()  # the account's import is not a call
    login_id = (await service.login(nir(1))).code_required.login_id
    code = await service.request_code(login_id)
    await service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code=code))
    assert service.running is not None
    assert await service.running.monitor.check_once()  # a health check: no span of its own
    everything = spans.get_finished_spans()

    check, request, verify = (
        rpc_span(everything, method) for method in ("CheckCredentials", "RequestCode", "VerifyCode")
    )
    assert {check.kind.name, request.kind.name, verify.kind.name} == {"SERVER"}
    kinds = {
        method: {str((s.attributes or {}).get("db.system", s.name)) for s in under(rpc, everything)}
        for method, rpc in (("check", check), ("request", request), ("verify", verify))
    }
    database = "postgresql" if backend == "redis_postgres" else "sqlite"
    assert database in kinds["check"]
    assert database in kinds["verify"]
    assert "smtp send" in kinds["request"]
    if backend == "redis_postgres":
        assert "redis" in kinds["check"]
        assert "redis" in kinds["request"]
    assert all(s.parent is not None for s in everything if s.kind.name != "SERVER")
    personal = (nir(1), nir(1)[:13], EMAIL, PASSWORD, code)
    for span in everything:
        text = f"{span.name} {dict(span.attributes or {})}"
        for value in personal:
            assert value not in text, (span.name, value)


def test_without_the_endpoint_no_tracing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without OTEL_EXPORTER_OTLP_ENDPOINT nothing is instrumented and `span` does nothing."""
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    seen = start_observability(Settings())
    assert seen.closers == []
    assert tracing._tracer is None
    with tracing.span("smtp send"):
        pass


@needs_otel
async def test_the_rfi_request_is_a_span_under_its_rpc(
    spans: Any, make_service: ServiceFactory
) -> None:
    """With the RFI over HTTP, the lookup of a login is an HTTP client span under the RPC."""
    async with rfi_server({nir(2, with_key=False): (200, '{"status": "affiliated"}')}) as rfi:
        service = await make_service(rfi_url=rfi.url, rfi_cache_ttl=0)
        await service.add_account(nir(2))
        spans.clear()
        await service.login(nir(2), channel=auth_pb2.CHANNEL_MOBILE_APP)
    everything = spans.get_finished_spans()

    http = [s for s in under(rpc_span(everything, "CheckCredentials"), everything)]
    assert [s.kind.name for s in http if s.name == "POST"] == ["CLIENT"]


def test_an_endpoint_without_the_extra_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT set without the extra installed: one warning says why no
    span is exported, and the service starts without tracing."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setattr(tracing, "installed", lambda: False)
    with structlog.testing.capture_logs() as logs:
        seen = start_observability(Settings())

    assert seen.closers == []
    assert tracing._tracer is None
    (warning,) = [line for line in logs if line["event"] == "tracing_unavailable"]
    assert "ameli-grpc[otel]" in warning["detail"]
    assert describe(Settings())["tracing"] == "off"
