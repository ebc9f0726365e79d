"""``Argon2PasswordHasher``: argon2id (argon2-cffi) off the event loop.

A verify takes tens of milliseconds of CPU; on the event loop it would stall
every other call, so each hash and verify runs in a thread pool sized to the
cores (argon2-cffi releases the GIL while it computes).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_R = TypeVar("_R")

# OWASP Password Storage Cheat Sheet, first argon2id option: m=19 MiB, t=2, p=1.
OWASP_PARAMETERS = argon2.Parameters(
    type=argon2.Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=2,
    memory_cost=19 * 1024,
    parallelism=1,
)


class Argon2PasswordHasher:
    def __init__(self, parameters: argon2.Parameters = OWASP_PARAMETERS, workers: int = 0) -> None:
        self._hasher = argon2.PasswordHasher.from_parameters(parameters)
        self._pool = ThreadPoolExecutor(
            max_workers=workers or os.cpu_count() or 1, thread_name_prefix="argon2"
        )
        # A hash of a random password: what an unknown NIR is verified against.
        self._dummy_hash = self._hasher.hash(os.urandom(16).hex())

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._run(self._verify_now, password_hash, password)

    async def verify_dummy(self, password: str) -> None:
        await self._run(self._verify_now, self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _verify_now(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def _run(self, function: Callable[..., _R], *args: str) -> _R:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)
