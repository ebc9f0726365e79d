"""Running the server process(es) from the CLI."""

from __future__ import annotations

import asyncio

from ameli_grpc.bootstrap import build_container
from ameli_grpc.config import Settings
from ameli_grpc.server.app import ConfigurationError, ServerOptions, serve_until_signalled


def options_from(settings: Settings, reuse_port: bool = False) -> ServerOptions:
    return ServerOptions(
        listen=settings.listen,
        max_message_bytes=settings.max_message_bytes,
        shutdown_grace=settings.shutdown_grace,
        reuse_port=reuse_port,
    )


async def _serve_one(settings: Settings, reuse_port: bool) -> None:
    container = await build_container(settings)
    await serve_until_signalled(container, options_from(settings, reuse_port))


def serve(settings: Settings, workers: int = 1) -> int:
    if workers != 1:
        raise ConfigurationError("--workers is not available yet")
    try:
        asyncio.run(_serve_one(settings, reuse_port=False))
    except ConfigurationError as error:
        print(f"ameli-grpc: {error}")
        return 2
    return 0
