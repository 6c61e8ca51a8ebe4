"""Clocks for tests: the authority and the verifier read time only through one of these."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

__all__ = ["NOW", "Clock", "RealClock"]

NOW = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)  # support.NOW as a datetime


class Clock:
    """Fixed, moved by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @property
    def epoch(self) -> int:
        return int(self.now.timestamp())


class RealClock(Clock):
    """The wall clock, for a server in another process (which reads its own)."""

    def __call__(self) -> datetime:
        return datetime.now(UTC)

    @property
    def epoch(self) -> int:
        return int(time.time())
