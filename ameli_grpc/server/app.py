"""The grpc.aio server: services, interceptor, health, reflection, limits, graceful stop."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ameli_grpc.bootstrap import Container
from ameli_grpc.config import ConfigurationError, is_loopback
from ameli_grpc.server.health import HealthMonitor
from ameli_grpc.server.interceptors import AuthServiceInterceptor
from ameli_grpc.server.servicer import AuthServicer

log = structlog.get_logger("ameli_grpc.server")


@dataclass
class ServerOptions:
    listen: str
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    allow_insecure: bool = False
    max_message_bytes: int = 2 * 1024 * 1024
    health_interval: float = 5.0
    shutdown_grace: float = 10.0
    reuse_port: bool = False


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    monitor: HealthMonitor
    grace: float

    async def stop(self) -> None:
        """Stop taking calls, let the ones under way finish (up to the grace period)."""
        await self.monitor.stop()
        await self.server.stop(self.grace)


async def start_server(container: Container, options: ServerOptions) -> RunningServer:
    credentials = check_listening(container, options)
    server = grpc.aio.server(
        interceptors=[AuthServiceInterceptor(container.caller_keys, container.clock)],
        options=[
            ("grpc.max_receive_message_length", options.max_message_bytes),
            ("grpc.max_send_message_length", options.max_message_bytes),
            ("grpc.so_reuseport", 1 if options.reuse_port else 0),
        ],
    )
    auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(container.service), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    if credentials is None:
        port = server.add_insecure_port(options.listen)
    else:
        port = server.add_secure_port(options.listen, credentials)
    await server.start()
    monitor = HealthMonitor(health_servicer, container.health_checks, options.health_interval)
    await monitor.start()
    if container.caller_keys.open:
        log.warning(
            "dev_mode_no_caller_keys",
            listen=options.listen,
            detail="every caller is accepted; configure API keys before any other use",
        )
    log.info("serving", listen=options.listen, port=port)
    return RunningServer(server, port, monitor, options.shutdown_grace)


def check_listening(container: Container, options: ServerOptions) -> grpc.ServerCredentials | None:
    """Refuse what would expose the service: no caller keys, or cleartext, beyond loopback.

    Returns the TLS credentials to listen with, if any.
    """
    loopback = is_loopback(options.listen)
    if container.caller_keys.open and not loopback:
        raise ConfigurationError(
            "no AMELI_PORTAL_API_KEYS / AMELI_ADVISOR_API_KEYS configured: "
            f"refusing to listen on {options.listen} (only loopback addresses run without keys)"
        )
    if options.tls_cert_file and options.tls_key_file:
        pair = (options.tls_key_file.read_bytes(), options.tls_cert_file.read_bytes())
        return grpc.ssl_server_credentials([pair])
    if options.tls_cert_file or options.tls_key_file:
        raise ConfigurationError("AMELI_TLS_CERT_FILE and AMELI_TLS_KEY_FILE go together")
    if not loopback and not options.allow_insecure:
        raise ConfigurationError(
            f"refusing to serve cleartext on {options.listen}: set AMELI_TLS_CERT_FILE and "
            "AMELI_TLS_KEY_FILE, or AMELI_ALLOW_INSECURE=true where a proxy or mesh does TLS"
        )
    return None


async def serve_until_signalled(container: Container, options: ServerOptions) -> None:
    """Serve until SIGTERM or SIGINT, then drain and close every resource."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        running = await start_server(container, options)
        await stop.wait()
        log.info("stopping", grace_seconds=options.shutdown_grace)
        await running.stop()
        log.info("stopped")
    finally:
        await container.aclose()
