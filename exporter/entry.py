"""A cache entry as readers see it (a frozen view), and the status vocabulary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from cachetools import LRUCache
from prometheus_client.metrics_core import Metric

from exporter.clock import Instant


class Status(StrEnum):
    """The one status vocabulary of /cache/stats, the landing page and the logs."""

    PENDING = "pending"  # not collected yet
    OK = "ok"  # the last refresh succeeded and its data is within the interval
    STALE = "stale"  # the last refresh succeeded, but its data is past the interval
    ERROR = "error"  # the last refresh failed: the last good data (if any) is served
    NOT_APPLICABLE = "not_applicable"  # no such hardware or tool here: nothing to export


class Result(StrEnum):
    """Label values of ``hwcache_collector_refreshes_total``."""

    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    NOT_APPLICABLE = "not_applicable"


NEVER = Instant(0.0, float("-inf"))  # the expiry of an entry never collected: due at once


@dataclass(frozen=True)
class EntryView:
    """One collector's entry at a moment, as every reader sees it; only MetricCache makes one.

    ``state`` is the outcome of the last refresh (never ``stale``, which ``status`` derives);
    ``rendered`` memoises this generation's encoded bytes for the renderer.
    """

    name: str
    interval: float
    timeout: float
    families: tuple[Metric, ...] = ()
    state: Status = Status.PENDING
    collected_at: Instant | None = None
    last_attempt_at: Instant | None = None
    expires_at: Instant = NEVER
    duration: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    generation: int = 0
    samples: int = 0
    unreadable_items: int = 0
    refreshes: Mapping[str, int] = field(default_factory=dict)
    last_forced_at: Instant | None = None
    refreshing: bool = False
    rendered: LRUCache[str, bytes] = field(
        default_factory=lambda: LRUCache(maxsize=16), compare=False, repr=False
    )

    @property
    def has_data(self) -> bool:
        """Whether any successful collection is cached."""
        return self.collected_at is not None

    def expired(self, now: Instant) -> bool:
        """Whether the entry is due for a refresh."""
        return now.mono >= self.expires_at.mono

    def age(self, now: Instant) -> float | None:
        """Seconds since the cached data was collected (``None`` without data)."""
        return None if self.collected_at is None else max(0.0, now.mono - self.collected_at.mono)

    def status(self, now: Instant) -> Status:
        """The entry's status word; whether a refresh is running is ``refreshing``."""
        if self.state is Status.OK and self.expired(now):
            return Status.STALE
        return self.state
