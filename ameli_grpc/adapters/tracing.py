"""OpenTelemetry tracing (SPEC §9), with the optional extra ``otel``.

When on, each RPC has a span (the gRPC aio server instrumentation; health
checks left out), with a child span for each of its SQL statements
(SQLAlchemy), Redis commands (redis-py), HTTP requests (HTTPX: the RFI and the
SMS gateway) and SMTP sends (``span`` below, around aiosmtplib, which has no
instrumentation of its own). The composition root turns it on when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; the exporter reads the standard
``OTEL_EXPORTER_OTLP_*`` variables (endpoint, headers, protocol ``grpc`` or
``http/protobuf``), the service is ``OTEL_SERVICE_NAME`` (default ``ameli-grpc``).

Nothing of OpenTelemetry is imported until ``Tracing.start``: without the
extra, this module still imports, ``installed()`` says False and ``span`` does
nothing. The instrumentations patch the libraries process-wide, so tracing is
started once per process, before the first engine, client and server exist.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

DEFAULT_SERVICE_NAME = "ameli-grpc"
_MODULES = (
    "opentelemetry.sdk",
    "opentelemetry.exporter.otlp",
    "opentelemetry.instrumentation.grpc",
    "opentelemetry.instrumentation.sqlalchemy",
    "opentelemetry.instrumentation.redis",
    "opentelemetry.instrumentation.httpx",
)

# The tracer of ``span`` while tracing is on, else None (then ``span`` costs a branch).
_tracer: Any = None


def installed() -> bool:
    """Whether the ``otel`` extra is installed (every module tracing needs is importable)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in _MODULES)
    except ModuleNotFoundError:  # a parent package is missing
        return False


@contextmanager
def span(name: str, attributes: Mapping[str, str | int] | None = None) -> Iterator[None]:
    """A client span around a call no instrumentation covers (SMTP); nothing when tracing is off.

    ``attributes`` name the server, never what is sent (no address, no code).
    """
    tracer = _tracer
    if tracer is None:
        yield
        return
    from opentelemetry.trace import SpanKind

    with tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes):
        yield


def untraced(check: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """``check`` run without spans: health checks every few seconds would drown the RPCs'."""

    async def run() -> None:
        if _tracer is None:
            await check()
            return
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        with suppress_instrumentation():
            await check()

    return run


class Tracing:
    """Tracing turned on in this process; ``close`` turns it off and flushes the spans."""

    def __init__(self, provider: Any, instrumentors: list[Any], *, owns_provider: bool) -> None:
        self.provider = provider
        self._instrumentors = instrumentors
        self._owns_provider = owns_provider

    @classmethod
    def start(cls, provider: Any = None) -> Tracing:
        """Instrument gRPC, SQLAlchemy, Redis and HTTPX with ``provider``, by default one that
        exports over OTLP in batches; ``ImportError`` without the ``otel`` extra."""
        global _tracer
        from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer, filters
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        owns_provider = provider is None
        provider = provider or _otlp_provider()
        grpc_server = GrpcAioInstrumentorServer(  # type: ignore[no-untyped-call]
            filter_=filters.negate(filters.health_check())
        )
        instrumentors: list[Any] = [grpc_server, RedisInstrumentor(), HTTPXClientInstrumentor()]
        for instrumentor in instrumentors:
            instrumentor.instrument(tracer_provider=provider)
        sql = SQLAlchemyInstrumentor()
        # It declares "sqlalchemy < 2.1" but works through the engine events, which 2.1 keeps:
        # its version check would leave every statement untraced.
        sql.instrument(tracer_provider=provider, skip_dep_check=True)
        instrumentors.append(sql)
        _tracer = provider.get_tracer("ameli_grpc")
        return cls(provider, instrumentors, owns_provider=owns_provider)

    def close(self) -> None:
        global _tracer
        _tracer = None
        for instrumentor in self._instrumentors:
            instrumentor.uninstrument()
        if self._owns_provider:
            self.provider.shutdown()  # exports what is left


def _otlp_provider() -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    )
    exporter: Any
    if protocol.startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        exporter = GrpcSpanExporter()
    name = os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # for any other library that asks for the global one
    return provider
