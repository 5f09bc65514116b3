"""Per-device fan-out: one read per item, bounded in parallel, all within one time budget."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from collectors.toolkit.errors import CollectorError

T = TypeVar("T")
R = TypeVar("R")
BUDGET_USED_UP = "the collector's time budget was used up"


@dataclass(frozen=True)
class Budget:
    """A collection's deadline on the monotonic clock, a margin before the framework's timeout.

    The margin lets a collector's own timeouts fire first, with their clear messages, and
    leaves time to build families from what was read.
    """

    deadline: float

    @classmethod
    def of(cls, timeout: float) -> Budget:
        """The budget of a collection allowed ``timeout`` seconds."""
        return cls(time.monotonic() + timeout - min(1.0, timeout * 0.1))

    def left(self, cap: float | None = None) -> float:
        """Seconds left (at most ``cap``); zero or less once used up."""
        left = self.deadline - time.monotonic()
        return left if cap is None else min(cap, left)


@dataclass(frozen=True)
class Outcome(Generic[T, R]):
    """What reading one item gave: a value, or the reason it could not be read."""

    item: T
    value: R | None = None
    error: str | None = None


async def fan_out(
    items: Sequence[T],
    read: Callable[[T, float], Awaitable[R]],
    budget: Budget,
    workers: int,
    item_timeout: float | None = None,
) -> list[Outcome[T, R]]:
    """``read(item, seconds)`` for every item, ``workers`` at a time, in the order given.

    Each read gets the budget left, capped by ``item_timeout``; an item whose turn comes
    after the budget is used up is not read. A CollectorError fails only its item; anything
    else (NotApplicable: the tool vanished; a bug; a cancel) ends the whole fan-out.
    """
    slots = asyncio.Semaphore(workers)

    async def one(item: T) -> Outcome[T, R]:
        async with slots:
            seconds = budget.left(item_timeout)
            if seconds <= 0:
                return Outcome(item, error=BUDGET_USED_UP)
            try:
                return Outcome(item, value=await read(item, seconds))
            except CollectorError as exc:
                return Outcome(item, error=str(exc))

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(item)) for item in items]
    except ExceptionGroup as errors:
        raise errors.exceptions[0] from None
    return [task.result() for task in tasks]
