"""Time as the engine reads it: one object, so unit tests can drive the engine with a fake one."""

from __future__ import annotations

import datetime
import time


class Clock:
    """Monotonic seconds for deadlines and lease ages; UTC wall time for ETAs."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)


class FakeClock(Clock):
    """A clock that moves only when told to (unit tests)."""

    def __init__(self, start: float = 1000.0,
                 wall: datetime.datetime = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)) -> None:
        self._monotonic = start
        self._wall = wall

    def advance(self, seconds: float) -> None:
        self._monotonic += seconds
        self._wall += datetime.timedelta(seconds=seconds)

    def monotonic(self) -> float:
        return self._monotonic

    def now(self) -> datetime.datetime:
        return self._wall
