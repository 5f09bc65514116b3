"""Metric cache semantics: expiry, single-flight, stale-on-failure, generations."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import BlockingCollector, CollectorContext
from exporter.cache import CacheEntry, MetricCache
from exporter.clock import FakeClock
from exporter.entry import Status
from exporter.freshness import freshness_families
from exporter.handlers.cache_api import entry_stats
from tests.doubles import CountingCollector, make_cache
from tests.exposition import value


async def test_entry_expires_after_interval_on_the_fake_clock() -> None:
    cache, collectors, clock = make_cache("a", interval=100.0)
    await cache.fresh(["a"], wait=5)
    assert collectors["a"].calls == 1
    clock.advance(99.9)
    await cache.fresh(["a"], wait=5)
    assert collectors["a"].calls == 1
    clock.advance(0.2)
    await cache.fresh(["a"], wait=5)
    assert collectors["a"].calls == 2
    assert cache.view("a").expires_at == clock.now().after(100.0)


async def test_fifty_concurrent_requests_on_expired_entry_collect_once() -> None:
    cache, collectors, clock = make_cache("a")
    await cache.fresh(["a"], wait=5)
    clock.advance(61)
    gate = collectors["a"].gate = asyncio.Event()
    collectors["a"].started.clear()
    waiters = [asyncio.create_task(cache.fresh(["a"], wait=5)) for _ in range(50)]
    await collectors["a"].started.wait()  # scheduled after all 50 waiters ran: they all wait
    gate.set()
    await asyncio.gather(*waiters)
    assert collectors["a"].calls == 2
    assert cache.view("a").refreshes["success"] == 2


async def test_waiter_gives_up_at_deadline_but_refresh_continues() -> None:
    cache, collectors, clock = make_cache("a")
    await cache.fresh(["a"], wait=5)
    clock.advance(61)
    gate = collectors["a"].gate = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await cache.fresh(["a"], wait=0.2)
    assert loop.time() - started < 1.0
    inflight = cache.inflight("a")
    assert inflight is not None and cache.view("a").has_data and cache.view("a").refreshing
    gate.set()
    await inflight
    assert collectors["a"].calls == 2 and cache.view("a").state is Status.OK


async def test_failure_keeps_last_good_families_and_records_error() -> None:
    cache, collectors, clock = make_cache("a", "b")
    await cache.fresh(["a", "b"], wait=5)
    good = cache.view("a").families
    generation_before = cache.generation
    clock.advance(61)
    collectors["a"].fail = "disk on fire"
    await cache.fresh(["a", "b"], wait=5)
    entry = cache.view("a")
    assert entry.families is good
    assert entry.state is Status.ERROR and entry.last_error == "RuntimeError: disk on fire"
    assert entry.consecutive_failures == 1
    assert entry.expires_at == clock.now().after(30.0)  # retried sooner than the interval
    assert cache.view("b").state is Status.OK and cache.view("b").refreshes["success"] == 2
    assert cache.generation > generation_before


async def test_collector_timeout_is_a_failure_with_message() -> None:
    cache, collectors, _ = make_cache("a", timeout=0.1)
    collectors["a"].gate = asyncio.Event()
    await cache.fresh(["a"], wait=5)
    entry = cache.view("a")
    assert entry.state is Status.ERROR and entry.last_error == "timed out after 0.1s"
    assert entry.refreshes["timeout"] == 1 and not entry.has_data


async def test_not_applicable_is_not_a_failure() -> None:
    cache, collectors, _ = make_cache("a")
    collectors["a"].not_applicable = True
    await cache.fresh(["a"], wait=5)
    entry = cache.view("a")
    assert entry.state is Status.NOT_APPLICABLE and entry.refreshes["not_applicable"] == 1
    assert entry.families == () and entry.consecutive_failures == 0


async def test_invalidate_expires_keeps_data_and_bumps_generation() -> None:
    cache, collectors, clock = make_cache("a", "b")
    await cache.warm_up()
    generation = cache.generation
    cache.invalidate(["a"], refresh_now=False)
    assert cache.generation == generation + 1
    assert cache.view("a").expired(clock.now()) and cache.view("a").has_data
    assert not cache.view("b").expired(clock.now())
    assert collectors["a"].calls == 1
    cache.invalidate(["b"], refresh_now=True)
    await cache.inflight("b")  # type: ignore[misc]
    assert not cache.view("b").refreshing
    assert collectors["b"].calls == 2


async def test_forced_refresh_wait_counts_down_on_clock() -> None:
    cache, _, clock = make_cache("a")
    assert cache.forced_refresh_wait("a", 60) == 0
    cache.invalidate(["a"], refresh_now=False)
    assert cache.forced_refresh_wait("a", 60) == 60
    clock.advance(45)
    assert cache.forced_refresh_wait("a", 60) == 15


async def test_warm_up_collects_all_in_parallel() -> None:
    cache, collectors, _ = make_cache("a", "b", "c")
    gates = {}
    for name, collector in collectors.items():
        gates[name] = collector.gate = asyncio.Event()
    warm = asyncio.create_task(cache.warm_up())
    for collector in collectors.values():
        await collector.started.wait()
    # All three are in flight at once before any is released.
    assert all(cache.inflight(n) is not None for n in collectors)
    for gate in gates.values():
        gate.set()
    await warm
    assert all(c.calls == 1 for c in collectors.values())


async def test_close_cancels_inflight_refreshes() -> None:
    cache, collectors, _ = make_cache("a")
    collectors["a"].gate = asyncio.Event()
    task = cache.refresh("a")
    await collectors["a"].started.wait()
    await cache.close()
    assert task.cancelled() and cache.inflight("a") is None
    await cache.fresh(["a"], wait=5)  # closed: no new refresh starts
    assert cache.inflight("a") is None and collectors["a"].calls == 1


class Skipping(CountingCollector):
    """Leaves ``skips`` (item, reason) pairs out of each collection; can hang after them."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.skips: list[tuple[str, str]] = []
        self.hang_after_skips = False

    async def collect(self) -> Sequence[Metric]:
        families = await super().collect()
        for item, reason in self.skips:
            self.skip(item, reason)
        if self.hang_after_skips:
            await asyncio.Event().wait()
        return families


class ThreadSkipping(BlockingCollector):
    """A blocking collector that skips one item from its worker thread."""

    def collect_blocking(self) -> Sequence[Metric]:
        self.skip("row 2", f"odd row read in {threading.current_thread().name}")
        return [GaugeMetricFamily("hw_test_rows", "Rows.", value=1.0)]


def unreadable_gauge(cache: MetricCache, name: str) -> float | None:
    families = freshness_families(cache.views(), cache.clock.now())
    return value(families, "hwcache_collector_unreadable_items", collector=name)


async def test_skipped_items_are_counted_logged_once_and_the_rest_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    collector = Skipping("a")
    collector.skips = [(f"dev{i}", f"reason {i}") for i in range(5)]
    cache = MetricCache([CacheEntry("a", collector, 60.0, 5.0)], FakeClock())
    with caplog.at_level(logging.INFO):
        await cache.fresh(["a"], wait=5)
    entry = cache.view("a")
    assert entry.state is Status.OK and entry.samples == 3 and entry.unreadable_items == 5
    assert unreadable_gauge(cache, "a") == 5
    stats = entry_stats(entry, cache.clock.now())
    assert (stats["status"], stats["unreadable_items"]) == ("ok", 5)
    logged = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(logged) == 1, logged
    assert logged[0].startswith("collector a: 5 unreadable items left out")
    assert "dev0: reason 0" in logged[0] and "dev2: reason 2" in logged[0]
    assert "dev3" not in logged[0] and "2 more" in logged[0]


async def test_unreadable_items_follow_the_served_data() -> None:
    collector = Skipping("a")
    clock = FakeClock()
    cache = MetricCache([CacheEntry("a", collector, 60.0, 5.0)], clock, error_retry_interval=30)
    assert unreadable_gauge(cache, "a") == 0  # nothing collected yet: nothing left out
    collector.skips = [("dev9", "garbled")]
    await cache.fresh(["a"], wait=5)
    clock.advance(61)
    collector.fail = "bmc gone"  # a failed refresh keeps serving the data that skipped dev9
    await cache.fresh(["a"], wait=5)
    assert cache.view("a").status(clock.now()) == "error" and unreadable_gauge(cache, "a") == 1
    clock.advance(61)
    collector.fail, collector.skips = None, []
    await cache.fresh(["a"], wait=5)
    assert cache.view("a").status(clock.now()) == "ok" and unreadable_gauge(cache, "a") == 0
    clock.advance(61)
    collector.not_applicable = True
    await cache.fresh(["a"], wait=5)
    assert (
        cache.view("a").status(clock.now()) == "not_applicable"
        and unreadable_gauge(cache, "a") == 0
    )


async def test_skips_of_a_timed_out_collection_do_not_count_for_the_next() -> None:
    collector = Skipping("a")
    clock = FakeClock()
    cache = MetricCache([CacheEntry("a", collector, 60.0, 0.2)], clock)
    collector.skips, collector.hang_after_skips = [("dev1", "garbled")], True
    await cache.fresh(["a"], wait=5)
    assert cache.view("a").refreshes["timeout"] == 1
    clock.advance(61)
    collector.skips, collector.hang_after_skips = [], False
    await cache.fresh(["a"], wait=5)
    entry = cache.view("a")
    assert entry.state is Status.OK and entry.unreadable_items == 0


async def test_blocking_collector_skips_from_its_thread(caplog: pytest.LogCaptureFixture) -> None:
    cache = MetricCache([CacheEntry("rows", ThreadSkipping(CollectorContext()), 60.0, 5.0)])
    with caplog.at_level(logging.INFO):
        await cache.fresh(["rows"], wait=5)
    entry = cache.view("rows")
    assert entry.state is Status.OK and entry.samples == 1 and entry.unreadable_items == 1
    logged = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert logged == [
        "collector rows: 1 unreadable item left out: row 2: odd row read in collect-ThreadSkipping"
    ]


async def test_invalidate_during_inflight_refresh_is_not_lost() -> None:
    cache, collectors, clock = make_cache("a", interval=3600.0)
    await cache.warm_up()
    clock.advance(3601)
    gate = collectors["a"].gate = asyncio.Event()
    collectors["a"].started.clear()
    before = cache.refresh("a")  # a scheduled refresh starts reading the hardware ...
    await collectors["a"].started.wait()
    clock.advance(10)
    cache.invalidate(["a"], refresh_now=False)  # ... operator swaps a disk and invalidates
    gate.set()
    await before  # the pre-invalidation refresh finishes
    collectors["a"].gate = None
    await cache.fresh(["a"], wait=5)  # next scrape after the invalidation
    assert collectors["a"].calls == 3, "data read before the invalidation cached for 1h"


async def test_invalidate_refresh_now_during_inflight_collects_again() -> None:
    cache, collectors, clock = make_cache("a", interval=3600.0)
    await cache.warm_up()
    clock.advance(3601)
    gate = collectors["a"].gate = asyncio.Event()
    collectors["a"].started.clear()
    before = cache.refresh("a")
    await collectors["a"].started.wait()
    cache.invalidate(["a"], refresh_now=True)  # answered 202 "recollecting now"
    collectors["a"].gate = None  # the refresh it starts does not wait
    gate.set()
    await before
    inflight = cache.inflight("a")
    if inflight is not None:
        await inflight
    assert collectors["a"].calls == 3, "refresh=now joined a collection started before it"
