"""``wait_for``: the one way a test waits for something another task or process does."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")


@overload
async def wait_for(
    predicate: Callable[[], Awaitable[T]],
    timeout: float = 5.0,  # noqa: ASYNC109
    *,
    interval: float = 0.02,
    ignoring: tuple[type[BaseException], ...] = (),
    what: str = "the condition",
) -> T: ...


@overload
async def wait_for(
    predicate: Callable[[], T],
    timeout: float = 5.0,  # noqa: ASYNC109
    *,
    interval: float = 0.02,
    ignoring: tuple[type[BaseException], ...] = (),
    what: str = "the condition",
) -> T: ...


async def wait_for(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 5.0,  # noqa: ASYNC109 - the bound is the helper's whole point
    *,
    interval: float = 0.02,
    ignoring: tuple[type[BaseException], ...] = (),
    what: str = "the condition",
) -> T:
    """Poll ``predicate`` (sync or async) until it returns a truthy value, and return that value.

    Exceptions of the ``ignoring`` types count as "not yet" (a server still
    starting refuses connections). After ``timeout`` seconds the test fails,
    naming ``what`` it waited for and the last exception ignored.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
        except ignoring as error:
            last_error = error
        if time.monotonic() >= deadline:
            cause = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"{what} did not happen within {timeout} s{cause}")
        await asyncio.sleep(interval)
