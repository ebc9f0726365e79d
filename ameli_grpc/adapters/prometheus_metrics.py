"""Prometheus metrics (SPEC §9), with ``prometheus_client``.

``PrometheusMetrics`` holds every metric of one server process and is told
what happens by four parts of the service, none of which imports this module:
the interceptor (each call: ``started``, ``handled``), the use cases through
the domain's ``Events`` port (logins, codes, locks), the adapters' outage
idiom (``outages.listen_to_dependencies``: ``dependency``) and the argon2
hasher (``hash_queue_depth``, ``hash_duration``). The gRPC names and labels are those of
go-grpc-prometheus. Every label value comes from a fixed set in the code —
method names, status codes, error reasons, lock kinds, auth methods,
dependency names — never from a request: no NIR, key, address or email.

One process serves its own registry (``MetricsServer``). With ``--workers N``
the workers write their values to files in ``PROMETHEUS_MULTIPROC_DIR``
(prometheus_client's multiprocess mode, chosen when the module is imported:
the parent sets the variable before it starts them) and the parent alone
serves the sum (``SharedMetrics``): counters and histograms add up, the
hash queue depth is the sum over live workers, a dependency's state is the
most recent one any live worker saw.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client import multiprocess as prometheus_multiprocess

from ameli_grpc.domain.model import AuthMethod

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
UNARY = "unary"
_GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")


class PrometheusMetrics:
    """Every metric of one server process, in a registry of its own (tests run several)."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._service = service
        into = self.registry
        self._started = Counter(
            "grpc_server_started", "RPCs started on the server.", _GRPC_LABELS, registry=into
        )
        self._handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their status.",
            (*_GRPC_LABELS, "grpc_code"),
            registry=into,
        )
        self._seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its answer, in seconds.",
            _GRPC_LABELS,
            registry=into,
        )
        self._refusals = Counter(
            "ameli_auth_refusals", "Refusals by error reason.", ("reason",), registry=into
        )
        self._logins = Counter(
            "ameli_auth_logins",
            "Completed logins by the method that completed them.",
            ("method",),
            registry=into,
        )
        self._codes = Counter(
            "ameli_codes_sent", "Security codes accepted by the mail service.", registry=into
        )
        self._locks = Counter(
            "ameli_locks",
            "Locks set, by kind (client: an address throttled).",
            ("kind",),
            registry=into,
        )
        self._up = Gauge(
            "ameli_dependency_up",
            "1 if the dependency answered its last use or health check, else 0.",
            ("dependency",),
            registry=into,
            multiprocess_mode="livemostrecent",
        )
        self._hash_depth = Gauge(
            "ameli_hash_queue_depth",
            "argon2 verifications admitted and not done (queued or running).",
            registry=into,
            multiprocess_mode="livesum",
        )
        self._hash_seconds = Histogram(
            "ameli_hash_duration_seconds",
            "Time of each argon2 job (a verify or a hash) in its hashing thread, in seconds.",
            registry=into,
            buckets=(0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
        )
        self._last_up: dict[str, bool] = {}

    # --- the interceptor's RpcObserver ------------------------------------------------------

    def started(self, method: str) -> None:
        self._started.labels(UNARY, self._service, method).inc()

    def handled(self, method: str, code: str, reason: str, seconds: float) -> None:
        self._handled.labels(UNARY, self._service, method, code).inc()
        self._seconds.labels(UNARY, self._service, method).observe(seconds)
        if reason:
            self._refusals.labels(reason).inc()

    # --- the domain's Events port -----------------------------------------------------------

    def login_completed(self, method: AuthMethod) -> None:
        self._logins.labels(method.value).inc()

    def code_sent(self) -> None:
        self._codes.inc()

    def lock_set(self, kind: str) -> None:
        self._locks.labels(kind).inc()

    # --- the adapters' outages and the hasher -----------------------------------------------

    def dependency(self, dependency: str, up: bool) -> None:
        """Set on a change only: a write per state change, not per query."""
        if self._last_up.get(dependency) is not up:
            self._last_up[dependency] = up
            self._up.labels(dependency).set(1 if up else 0)

    def hash_queue_depth(self, pending: int) -> None:
        self._hash_depth.set(pending)

    def hash_duration(self, seconds: float) -> None:
        self._hash_seconds.observe(seconds)


class MetricsServer:
    """``/metrics`` over HTTP (prometheus_client's own server, in a daemon thread)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @classmethod
    def start(cls, host: str, port: int, registry: CollectorRegistry) -> MetricsServer:
        """Listen on ``host:port``; ``OSError`` if the address cannot be bound."""
        server, thread = start_http_server(port, addr=host, registry=registry)
        return cls(server, thread)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class SharedMetrics:
    """The one ``/metrics`` of several worker processes, served by their parent.

    ``start`` makes an empty directory and names it in ``PROMETHEUS_MULTIPROC_DIR``
    (so the workers started afterwards write their values there), then serves
    what every worker wrote. ``worker_exited`` forgets a dead worker's gauges;
    its counters stay counted. ``close`` stops serving and removes the directory.
    """

    def __init__(self, directory: str, server: MetricsServer) -> None:
        self.directory = directory
        self.server = server

    @classmethod
    def start(cls, host: str, port: int) -> SharedMetrics:
        directory = tempfile.mkdtemp(prefix="ameli-metrics-")
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
            registry, path=directory
        )
        try:
            server = MetricsServer.start(host, port, registry)
        except OSError:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        os.environ[MULTIPROCESS_VARIABLE] = directory
        return cls(directory, server)

    def worker_exited(self, pid: int) -> None:
        prometheus_multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
            pid, self.directory
        )

    def close(self) -> None:
        self.server.close()
        if os.environ.get(MULTIPROCESS_VARIABLE) == self.directory:
            del os.environ[MULTIPROCESS_VARIABLE]
        shutil.rmtree(self.directory, ignore_errors=True)
