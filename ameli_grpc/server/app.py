"""The grpc.aio server: services, interceptor, health, reflection, limits, graceful stop."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
from dataclasses import dataclass

import grpc
import structlog
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ameli_grpc.bootstrap import Container
from ameli_grpc.server.health import HealthMonitor
from ameli_grpc.server.interceptors import AuthServiceInterceptor
from ameli_grpc.server.servicer import AuthServicer

log = structlog.get_logger("ameli_grpc.server")


class ConfigurationError(Exception):
    """The settings are unsafe or inconsistent; the server refuses to start."""


@dataclass
class ServerOptions:
    listen: str
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
    if container.caller_keys.open and not is_loopback(options.listen):
        raise ConfigurationError(
            "no AMELI_PORTAL_API_KEYS / AMELI_ADVISOR_API_KEYS configured: "
            f"refusing to listen on {options.listen} (only loopback addresses run without keys)"
        )
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
    port = server.add_insecure_port(options.listen)
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


async def serve_until_signalled(container: Container, options: ServerOptions) -> None:
    """Serve until SIGTERM or SIGINT, then drain and close every resource."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    running = await start_server(container, options)
    try:
        await stop.wait()
        log.info("stopping", grace_seconds=options.shutdown_grace)
        await running.stop()
    finally:
        await container.aclose()
        log.info("stopped")


def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
