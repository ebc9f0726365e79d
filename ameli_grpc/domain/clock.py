"""Time as a port, so that tests can move it; all times are aware UTC datetimes."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def add_calendar_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus whole calendar months, the day clamped to the month's end.

    31 August + 6 months is 28 (or 29) February: "6 mois" of the guide.
    """
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


class AdjustableClock:
    """The real time plus an offset that only grows: ``advance(minutes=15)`` jumps ahead.

    For tests (``ameli_grpc.testing``): locks and codes expire without sleeping.
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
