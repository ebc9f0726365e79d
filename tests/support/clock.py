"""A server clock that tests move forward, so that locks and codes expire without sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class AdjustableClock:
    """The real time plus an offset that only grows: ``advance(minutes=15)`` jumps ahead.

    It follows the wall clock (so Redis key lifetimes, which run in real
    time, stay longer than what the rules compute from it) and never goes back.
    """

    def __init__(self) -> None:
        self._offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta | None = None, /, **units: float) -> datetime:
        step = (delta or timedelta()) + timedelta(**units)
        if step < timedelta():
            raise ValueError("the clock only moves forward")
        self._offset += step
        return self.now()
