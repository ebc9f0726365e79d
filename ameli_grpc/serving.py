"""Running the server from the CLI: one process, or N processes on one port.

Each process builds its container (``ameli_grpc.bootstrap``), serves until
SIGTERM or SIGINT, then drains (``RunningServer.drain``): health NOT_SERVING at
once, every call still served for ``AMELI_DRAIN_DELAY``, then no new call
taken, every call under way answered within ``AMELI_SHUTDOWN_GRACE``, gRPC
stopped — and only then the adapters closed (database, Redis, the argon2
pool), since the calls under way still use them. A second signal cuts the
drain delay short.

Before anything is opened, the address is probed and the settings checked
(``check_serving``): a refusal is one ``refusing_to_start`` line, exit 2. Then
the database is migrated once (or, with ``--no-migrate``, found at head).

With ``--workers N`` the parent then supervises N processes
(``ameli_grpc.supervisor``) that each bind the same address with
``SO_REUSEPORT`` (the kernel spreads connections between them): a worker that
dies is restarted, SIGTERM or SIGINT to the parent is passed on and each
worker drains. With ``AMELI_METRICS_LISTEN`` the parent alone serves
``/metrics``, the sum of what every worker counted
(``observability.start_shared_metrics``); one process serves its own.
"""

from __future__ import annotations

import asyncio
import signal

import structlog

from ameli_grpc.bootstrap import (
    build_container,
    check_schema,
    check_serving,
    migrate,
    server_options,
)
from ameli_grpc.config import ConfigurationError, Settings, log_refusal
from ameli_grpc.log import configure_logging
from ameli_grpc.observability import start_shared_metrics
from ameli_grpc.server.app import start_server
from ameli_grpc.server.listening import CannotListen, ensure_can_listen
from ameli_grpc.supervisor import REFUSED, Supervisor

log = structlog.get_logger("ameli_grpc.serving")


def serve(settings: Settings, workers: int = 1, *, migrate: bool = True) -> int:
    """Serve until signalled; the exit status is 0 after a clean drain, 2 on bad settings.

    ``migrate`` False (``--no-migrate``): the schema must already be at head.
    """
    try:
        check_workers(settings, workers)
        _check_can_listen(settings.listen, reuse_port=workers > 1)  # first: the address itself
        check_serving(settings)
        asyncio.run(_prepare_schema(settings, migrate))
        if workers == 1:
            asyncio.run(_serve_one(settings, reuse_port=False))
            return 0
        return _serve_many(settings, workers)
    except ConfigurationError as error:
        log_refusal(error)
        return REFUSED


def _check_can_listen(listen: str, *, reuse_port: bool) -> None:
    try:
        ensure_can_listen(listen, reuse_port=reuse_port)
    except CannotListen as error:
        raise ConfigurationError(f"AMELI_LISTEN: {error}", "AMELI_LISTEN") from None


async def _prepare_schema(settings: Settings, migrate_first: bool) -> None:
    if migrate_first:
        await migrate(settings)
    else:
        await check_schema(settings)


def check_workers(settings: Settings, workers: int) -> None:
    if workers < 1:
        raise ConfigurationError("--workers must be at least 1", "--workers")
    if workers > 1 and not settings.redis_url:
        raise ConfigurationError(
            "--workers needs AMELI_REDIS_URL: the in-process store cannot be shared "
            "between processes, so its limits would not hold",
            "AMELI_REDIS_URL",
        )
    if workers > 1 and settings.listen.endswith(":0"):
        raise ConfigurationError(
            "--workers needs a fixed port in AMELI_LISTEN, not :0", "AMELI_LISTEN"
        )


async def _serve_one(settings: Settings, reuse_port: bool, serve_metrics: bool = True) -> None:
    """Serve until SIGTERM or SIGINT, drain, then close every resource."""
    signalled, again = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: (again if signalled.is_set() else signalled).set())
    # The configuration is final from here on: the loggers may be built once (hot path).
    configure_logging(settings.log_format, settings.log_level, cache_loggers=True)
    # serve() prepared the schema
    container = await build_container(settings, migrate=False, serve_metrics=serve_metrics)
    try:
        options = server_options(settings, container.app.caller_keys, reuse_port=reuse_port)
        if signalled.is_set():  # stopped while starting: nothing was served, nothing to drain
            return
        try:
            running = await start_server(container.app, options)
        except CannotListen as error:
            raise ConfigurationError(f"AMELI_LISTEN: {error}", "AMELI_LISTEN") from None
        await signalled.wait()
        await running.drain(hurry=again)
    finally:
        await container.aclose()  # last: the calls under way needed the adapters
    log.info("stopped")


def _worker_main(settings: Settings) -> None:
    """A worker process: its settings refused is exit status 2, which is not restarted."""
    configure_logging(settings.log_format, settings.log_level)
    try:
        asyncio.run(_serve_one(settings, reuse_port=True, serve_metrics=False))
    except ConfigurationError as error:
        log_refusal(error)
        raise SystemExit(REFUSED) from None


def _serve_many(settings: Settings, workers: int) -> int:
    shared = start_shared_metrics(settings)  # before the workers: they inherit its directory
    try:
        on_exit = shared.worker_exited if shared else None
        return Supervisor(_worker_main, (settings,), workers, on_exit=on_exit).run()
    finally:
        if shared is not None:
            shared.close()
