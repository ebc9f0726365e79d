"""One idiom for every adapter: an unreachable service becomes ``DependencyUnavailable``.

Each adapter says which of its driver's exceptions mean "the service cannot
serve us now" (a tuple of types, or a predicate where the driver needs a
closer look), and wraps its I/O in ``map_outages``. Anything else — a bug, a
constraint violation — stays what it is, so a bug never reads as an outage.

Each block also tells the process's dependency listeners (``listen_to_dependencies``)
whether the service answered: ``(dependency, True)`` when the block ends
normally, ``(dependency, False)`` on an outage. The metrics' ``ameli_dependency_up``
is kept this way, from every real use and health check of every adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ameli_grpc.domain.errors import DependencyUnavailable

Outages = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
DependencyListener = Callable[[str, bool], None]

# Process-wide, as the adapters' connections are; empty unless metrics are on.
_listeners: list[DependencyListener] = []


def listen_to_dependencies(listener: DependencyListener) -> Callable[[], None]:
    """Call ``listener(dependency, up)`` after each use of a dependency; returns its remover."""
    _listeners.append(listener)

    def remove() -> None:
        if listener in _listeners:
            _listeners.remove(listener)

    return remove


def _tell(dependency: str, up: bool) -> None:
    for listener in _listeners:
        listener(dependency, up)


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
    except DependencyUnavailable as error:
        _tell(error.dependency, False)
        raise
    except Exception as error:
        if _is_outage(error, outages):
            _tell(dependency, False)
            raise DependencyUnavailable(dependency, describe(error)) from error
        raise  # a bug or a refusal of the request: says nothing of the service's health
    _tell(dependency, True)


def _is_outage(error: BaseException, outages: Outages) -> bool:
    if isinstance(outages, type | tuple):
        return isinstance(error, outages)
    return outages(error)
