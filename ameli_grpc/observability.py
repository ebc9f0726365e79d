"""Metrics, tracing and the start-up summary, wired from the settings (SPEC §9).

Part of the composition root: ``ameli_grpc.bootstrap`` calls it while it
builds a process's container, ``ameli_grpc.serving`` for the one ``/metrics``
of several workers. No I/O at import time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from sqlalchemy.engine import make_url

from ameli_grpc.adapters import tracing
from ameli_grpc.adapters.outages import listen_to_dependencies
from ameli_grpc.adapters.prometheus_metrics import MetricsServer, PrometheusMetrics, SharedMetrics
from ameli_grpc.config import ConfigurationError, Settings
from ameli_grpc.server.callers import Role
from ameli_grpc.server.health import Check
from ameli_grpc.server.interceptors import SERVICE_NAME

log = structlog.get_logger("ameli_grpc.observability")

Closer = Callable[[], Awaitable[None]]
TRACING_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"


@dataclass
class Observability:
    """One process's tracing and metrics (None when off), and what to close."""

    metrics: PrometheusMetrics | None = None
    metrics_port: int | None = None  # where this process serves /metrics, if it does
    closers: list[Closer] = field(default_factory=list)

    def serve_metrics(self, settings: Settings) -> None:
        """Serve this process's ``/metrics`` on ``AMELI_METRICS_LISTEN`` (one process; the
        workers' are served by their parent: ``start_shared_metrics``)."""
        address = settings.metrics_address()
        if self.metrics is None or address is None:
            return
        try:
            server = MetricsServer.start(*address, self.metrics.registry)
        except OSError as error:
            raise _cannot_listen(settings, error) from None
        self.metrics_port = server.port
        log.info("metrics_serving", host=address[0], port=server.port)

        async def stop_serving() -> None:
            server.close()

        self.closers.append(stop_serving)


def start_observability(settings: Settings) -> Observability:
    """Tracing if ``OTEL_EXPORTER_OTLP_ENDPOINT`` asks for it, and this process's metrics if
    ``AMELI_METRICS_LISTEN`` is set (counted from now on; served by ``serve_metrics``)."""
    result = Observability()
    _start_tracing(result)
    if settings.metrics_address() is None:
        return result
    metrics = PrometheusMetrics(SERVICE_NAME)
    stop_listening = listen_to_dependencies(metrics.dependency)
    result.metrics = metrics

    async def forget_dependencies() -> None:
        stop_listening()

    result.closers.append(forget_dependencies)
    return result


def start_shared_metrics(settings: Settings) -> SharedMetrics | None:
    """For ``--workers``: the parent's ``/metrics`` over every worker, started before them."""
    address = settings.metrics_address()
    if address is None:
        return None
    try:
        shared = SharedMetrics.start(*address)
    except OSError as error:
        raise _cannot_listen(settings, error) from None
    log.info("metrics_serving", host=address[0], port=shared.server.port, workers="all")
    return shared


def _cannot_listen(settings: Settings, error: OSError) -> ConfigurationError:
    return ConfigurationError(
        f"AMELI_METRICS_LISTEN: cannot listen on {settings.metrics_listen} "
        f"({error.strerror or type(error).__name__})"
    )


def _start_tracing(result: Observability) -> None:
    if not os.environ.get(TRACING_VARIABLE):
        return
    if not tracing.installed():
        log.warning(
            "tracing_unavailable",
            detail=f"{TRACING_VARIABLE} is set but the otel extra is not installed "
            "(pip install 'ameli-grpc[otel]'): no spans are exported",
        )
        return
    started = tracing.Tracing.start()
    log.info("tracing_enabled", exporter="otlp")

    async def stop_tracing() -> None:
        started.close()

    result.closers.append(stop_tracing)


def untraced_checks(*checks: Check) -> tuple[Check, ...]:
    """The health checks, left out of the traces (they run every few seconds)."""
    return tuple(tracing.untraced(check) for check in checks)


def tracing_mode() -> str:
    """``otlp`` when spans are exported, else ``off``."""
    return "otlp" if os.environ.get(TRACING_VARIABLE) and tracing.installed() else "off"


def describe(settings: Settings) -> dict[str, object]:
    """What the ``serving`` line says: the adapters in use, TLS, the callers, metrics, tracing.

    Kinds, hosts and names only: never a password, key, or a URL's credentials or query.
    """
    callers = {role.value: [name for name, _key in settings.api_keys(role.value)] for role in Role}
    return {
        "store": _where(settings.redis_url, path=True) if settings.redis_url else "memory",
        "database": _database(settings.database_url),
        "mailer": f"smtp://{settings.smtp_host}:{settings.smtp_port}"
        if settings.smtp_host
        else f"outbox:{settings.outbox_dir}",
        "sms": _where(settings.sms_url) if settings.sms_url else f"outbox:{settings.outbox_dir}",
        "rfi": _where(settings.rfi_url) if settings.rfi_url else "sql",
        "tls": "on" if settings.tls_cert_file and settings.tls_key_file else "off",
        "callers": {role: {"count": len(names), "names": names} for role, names in callers.items()},
        "metrics": settings.metrics_listen.strip() or "off",
        "tracing": tracing_mode(),
    }


_AUTHORITY_END = re.compile(r"[/?#]")


def _where(url: str, *, path: bool = False) -> str:
    """``scheme://host:port`` (and the path if ``path``), without credentials or query."""
    scheme, _, rest = url.partition("://")
    rest = rest[rest.rfind("@") + 1 :]  # after the credentials, if any (an '@' in them too)
    end = _AUTHORITY_END.search(rest)
    authority = rest[: end.start()] if end else rest
    tail = rest[end.start() :].split("?", 1)[0].split("#", 1)[0] if end and path else ""
    return f"{scheme}://{authority}{tail}"


def _database(url: str) -> str:
    """The database's kind and host (or file): ``postgresql://host:5432/name``,
    ``sqlite:///path``; never its password."""
    try:
        parsed = make_url(url)
    except Exception:  # the database adapter reports a bad URL; the summary stays quiet
        return "unreadable URL"
    kind = parsed.get_backend_name()
    if kind == "sqlite":
        return f"sqlite:///{parsed.database or ':memory:'}"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{kind}://{parsed.host or ''}{port}/{parsed.database or ''}"
