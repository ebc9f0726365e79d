"""One idiom for every adapter: an unreachable service becomes ``DependencyUnavailable``.

Each adapter says which of its driver's exceptions mean "the service cannot
serve us now" (a tuple of types, or a predicate where the driver needs a
closer look), and wraps its I/O in ``map_outages``. Anything else — a bug, a
constraint violation — stays what it is, so a bug never reads as an outage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ameli_grpc.domain.errors import DependencyUnavailable

Outages = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


def type_name(error: BaseException) -> str:
    """The default label of an outage: the exception's type, never its text."""
    return type(error).__name__


@contextmanager
def map_outages(
    dependency: str, outages: Outages, *, describe: Callable[[BaseException], str] = type_name
) -> Iterator[None]:
    """Re-raise, inside the block, each outage of ``dependency`` as ``DependencyUnavailable``.

    ``describe`` gives the label kept as ``DependencyUnavailable.detail``: our
    own words only, since a driver's message may quote the data it was sent.
    """
    try:
        yield
    except DependencyUnavailable:
        raise
    except Exception as error:
        if _is_outage(error, outages):
            raise DependencyUnavailable(dependency, describe(error)) from error
        raise


def _is_outage(error: BaseException, outages: Outages) -> bool:
    if isinstance(outages, type | tuple):
        return isinstance(error, outages)
    return outages(error)
