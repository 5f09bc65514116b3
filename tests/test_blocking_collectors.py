"""A timed-out blocking collection never overlaps the next one nor starves other collectors."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import BlockingCollector, CollectorContext
from exporter.cache import CacheEntry, MetricCache
from exporter.clock import FakeClock
from exporter.entry import Status

# ThreadPoolExecutor's default size, which asyncio.to_thread's default executor uses.
DEFAULT_WORKERS = min(32, (os.cpu_count() or 1) + 4)


class HungRead(BlockingCollector):
    """Blocks like a read of a wedged sysfs attribute until ``release`` is set."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__(CollectorContext())
        self.release = release
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()

    def collect_blocking(self) -> Sequence[Metric]:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            self.release.wait(30)
            return []
        finally:
            with self._lock:
                self.running -= 1


class QuickRead(BlockingCollector):
    """A healthy blocking collector."""

    def collect_blocking(self) -> Sequence[Metric]:
        return [GaugeMetricFamily("hw_test_quick", "Quick.", value=1.0)]


def build(release: threading.Event) -> tuple[MetricCache, HungRead, FakeClock]:
    clock = FakeClock()
    hung = HungRead(release)
    entries = [
        CacheEntry("hung", hung, 600.0, 0.05),
        CacheEntry("quick", QuickRead(CollectorContext()), 600.0, 2.0),
    ]
    return MetricCache(entries, clock, error_retry_interval=30.0), hung, clock


async def test_timed_out_blocking_collection_never_overlaps_the_next() -> None:
    release = threading.Event()
    cache, hung, clock = build(release)
    try:
        for _ in range(3):  # three scrapes, each after the error retry interval
            await cache.fresh(["hung"], wait=1)
            assert cache.view("hung").state is Status.ERROR
            clock.advance(31)
        assert hung.peak == 1, f"{hung.peak} collections of one collector ran at once"
    finally:
        release.set()


async def test_hung_collector_does_not_starve_other_blocking_collectors() -> None:
    release = threading.Event()
    cache, hung, clock = build(release)
    try:
        for _ in range(DEFAULT_WORKERS):
            await cache.fresh(["hung"], wait=1)
            clock.advance(31)
        await cache.fresh(["quick"], wait=3)
        quick = cache.view("quick")
        assert quick.state is Status.OK, quick.last_error
    finally:
        release.set()
