"""A server clock that tests move forward (it ships with the package, for other teams too)."""

from ameli_grpc.domain.clock import AdjustableClock

__all__ = ["AdjustableClock"]
