"""The anchors: what the service is compared with, each a plain grpc.aio server of its own.

    python -m bench.anchors echo|redis|argon2 --listen 127.0.0.1:PORT [--redis-url URL]

``echo`` answers GetLockStatus with a constant response at once; ``redis`` does one
``GET`` of a key before answering; ``argon2`` answers CheckCredentials ``authenticated``
after an argon2id verify with the service's parameters, in a pool of one thread per core
(``run_in_executor``), as the service hashes. No interceptor, no logging, no database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeAlias

import argon2
import grpc
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc
from redis.asyncio import Redis

from ameli_grpc.adapters.argon2_hasher import OWASP_PARAMETERS
from bench.common import PASSWORD

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"  # generic in the stubs only

KINDS = ("echo", "redis", "argon2")


class EchoAnchor(auth_pb2_grpc.AuthServiceServicer):
    """GetLockStatus: a constant answer, at once."""

    async def GetLockStatus(  # noqa: N802 - generated interface
        self, request: auth_pb2.GetLockStatusRequest, context: Context
    ) -> auth_pb2.GetLockStatusResponse:
        return auth_pb2.GetLockStatusResponse()


class RedisAnchor(auth_pb2_grpc.AuthServiceServicer):
    """GetLockStatus: one Redis round trip, then a constant answer."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def GetLockStatus(  # noqa: N802 - generated interface
        self, request: auth_pb2.GetLockStatusRequest, context: Context
    ) -> auth_pb2.GetLockStatusResponse:
        await self._redis.get(f"bench-anchor:{request.nir}")
        return auth_pb2.GetLockStatusResponse()


class Argon2Anchor(auth_pb2_grpc.AuthServiceServicer):
    """CheckCredentials: one argon2id verify off the event loop, then ``authenticated``."""

    def __init__(self) -> None:
        self._hasher = argon2.PasswordHasher.from_parameters(OWASP_PARAMETERS)
        self._digest = self._hasher.hash(PASSWORD)
        self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)

    async def CheckCredentials(  # noqa: N802 - generated interface
        self, request: auth_pb2.CheckCredentialsRequest, context: Context
    ) -> auth_pb2.CheckCredentialsResponse:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._hasher.verify, self._digest, request.password)
        return auth_pb2.CheckCredentialsResponse(authenticated=auth_pb2.Authenticated())


async def serve(kind: str, listen: str, redis_url: str) -> None:
    redis = Redis.from_url(redis_url) if kind == "redis" else None
    servicer: auth_pb2_grpc.AuthServiceServicer
    if redis is not None:
        servicer = RedisAnchor(redis)  # type: ignore[abstract]  # the rest: UNIMPLEMENTED
    else:
        anchor = Argon2Anchor if kind == "argon2" else EchoAnchor
        servicer = anchor()  # type: ignore[abstract]
    server = grpc.aio.server()
    auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server)
    server.add_insecure_port(listen)
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--listen", required=True, help="host:port")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.kind, args.listen, args.redis_url))


if __name__ == "__main__":
    main()
