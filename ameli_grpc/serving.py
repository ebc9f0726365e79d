"""Running the server from the CLI: one process, or N processes on one port.

Each process builds its container (``ameli_grpc.bootstrap``), serves until
SIGTERM or SIGINT, then drains (``RunningServer.drain``): health NOT_SERVING at
once, every call still served for ``AMELI_DRAIN_DELAY``, then no new call
taken, every call under way answered within ``AMELI_SHUTDOWN_GRACE``, gRPC
stopped — and only then the adapters closed (database, Redis, the argon2
pool), since the calls under way still use them. A second signal cuts the
drain delay short.

With ``--workers N`` the parent migrates the database once, then supervises N
processes (``ameli_grpc.supervisor``) that each bind the same address with
``SO_REUSEPORT`` (the kernel spreads connections between them): a worker that
dies is restarted, SIGTERM or SIGINT to the parent is passed on and each
worker drains.
"""

from __future__ import annotations

import asyncio
import signal

import structlog

from ameli_grpc.bootstrap import build_container, migrate, server_options
from ameli_grpc.config import ConfigurationError, Settings
from ameli_grpc.log import configure_logging
from ameli_grpc.server.app import start_server
from ameli_grpc.supervisor import REFUSED, Supervisor

log = structlog.get_logger("ameli_grpc.serving")


def serve(settings: Settings, workers: int = 1) -> int:
    """Serve until signalled; the exit status is 0 after a clean drain, 2 on bad settings."""
    try:
        check_workers(settings, workers)
        if workers == 1:
            asyncio.run(_serve_one(settings, reuse_port=False, migrate=True))
            return 0
        asyncio.run(migrate(settings))
        return Supervisor(_worker_main, (settings,), workers).run()
    except ConfigurationError as error:
        log.error("refusing_to_start", reason=str(error))
        return REFUSED


def check_workers(settings: Settings, workers: int) -> None:
    if workers < 1:
        raise ConfigurationError("--workers must be at least 1")
    if workers > 1 and not settings.redis_url:
        raise ConfigurationError(
            "--workers needs AMELI_REDIS_URL: the in-process store cannot be shared "
            "between processes, so its limits would not hold"
        )
    if workers > 1 and settings.listen.endswith(":0"):
        raise ConfigurationError("--workers needs a fixed port in AMELI_LISTEN, not :0")


async def _serve_one(settings: Settings, reuse_port: bool, migrate: bool) -> None:
    """Serve until SIGTERM or SIGINT, drain, then close every resource."""
    signalled, again = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: (again if signalled.is_set() else signalled).set())
    container = await build_container(settings, migrate=migrate)
    try:
        options = server_options(settings, container.app.caller_keys, reuse_port=reuse_port)
        if signalled.is_set():  # stopped while starting: nothing was served, nothing to drain
            return
        running = await start_server(container.app, options)
        await signalled.wait()
        await running.drain(hurry=again)
    finally:
        await container.aclose()  # last: the calls under way needed the adapters
    log.info("stopped")


def _worker_main(settings: Settings) -> None:
    """A worker process: its settings refused is exit status 2, which is not restarted."""
    configure_logging(settings.log_format)
    try:
        asyncio.run(_serve_one(settings, reuse_port=True, migrate=False))
    except ConfigurationError as error:
        log.error("refusing_to_start", reason=str(error))
        raise SystemExit(REFUSED) from None
