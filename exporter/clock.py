"""Injectable wall clock so expiry logic is testable without sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Source of the current wall-clock time in seconds since the epoch."""

    def __call__(self) -> float: ...


def system_clock() -> float:
    """Return the real wall-clock time."""
    return time.time()


class FakeClock:
    """A clock that only moves when told to (for tests and benchmarks)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds
