"""Clocks that tests move: the server's (it ships with the package, for other teams too), and
a monotonic one moved by hand."""

from ameli_grpc.domain.clock import AdjustableClock

__all__ = ["AdjustableClock", "Seconds"]


class Seconds:
    """A monotonic clock (``time.monotonic``'s stand-in) moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
