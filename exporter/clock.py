"""Time sources: monotonic for expiry, deadlines and rate limits; wall clock only for export."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Instant:
    """One moment read on both clocks: ``mono`` to compare and subtract, ``wall`` to show."""

    wall: float
    mono: float

    def after(self, seconds: float) -> Instant:
        """The moment ``seconds`` later (on both clocks)."""
        return Instant(self.wall + seconds, self.mono + seconds)

    def at_wall(self, wall: float) -> Instant:
        """The moment of Unix time ``wall``, placed on the monotonic clock relative to this one."""
        return Instant(wall, self.mono + (wall - self.wall))


class Clock:
    """The real clocks; a wall-clock step (NTP, an operator) never moves ``monotonic``."""

    def wall(self) -> float:
        """Unix time, for exported timestamps and the snapshot file."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds on a clock that never steps, for expiry, deadlines and rate limits."""
        return time.monotonic()

    def now(self) -> Instant:
        """The current moment on both clocks."""
        return Instant(self.wall(), self.monotonic())


system_clock = Clock()


class FakeClock(Clock):
    """Clocks that only move when told to (for tests and benchmarks)."""

    def __init__(self, wall: float = 1_700_000_000.0, monotonic: float = 5_000.0) -> None:
        self.wall_time = wall
        self.monotonic_time = monotonic

    def wall(self) -> float:
        return self.wall_time

    def monotonic(self) -> float:
        return self.monotonic_time

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        self.wall_time += seconds
        self.monotonic_time += seconds

    def step(self, seconds: float) -> None:
        """Step the wall clock alone, as NTP or an operator does (negative: backwards)."""
        self.wall_time += seconds
