"""Small in-process collectors for testing the cache framework (not hardware mocks)."""

from __future__ import annotations

import asyncio
import types
from collections import namedtuple
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import Collector, CollectorContext, NotApplicable
from exporter.app import create_app
from exporter.cache import CacheEntry, MetricCache
from exporter.clock import FakeClock
from exporter.settings import Settings


class CountingCollector(Collector):
    """Returns ``hw_test_<name>_value`` = number of collections so far; can block or fail."""

    def __init__(self, name: str, samples: int = 3) -> None:
        super().__init__(CollectorContext())
        self.name = name
        self.samples = samples
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()  # set when a collection begins (tests await it)
        self.fail: str | None = None
        self.not_applicable = False

    async def collect(self) -> Sequence[Metric]:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError(self.fail)
        if self.not_applicable:
            raise NotApplicable("no such hardware")
        family = GaugeMetricFamily(f"hw_test_{self.name}_value", "Test value.", labels=["device"])
        for i in range(self.samples):
            family.add_metric([f"dev{i}"], float(self.calls))
        return [family]


def make_cache(
    *names: str, interval: float = 60.0, timeout: float = 5.0, clock: FakeClock | None = None
) -> tuple[MetricCache, dict[str, CountingCollector], FakeClock]:
    """A MetricCache over counting collectors and a fake clock."""
    clock = clock or FakeClock()
    collectors = {name: CountingCollector(name) for name in names}
    entries = [CacheEntry(n, c, interval, timeout) for n, c in collectors.items()]
    return MetricCache(entries, clock, error_retry_interval=30.0), collectors, clock


ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


async def start(
    aiohttp_client: ClientFactory, *names: str, **settings: Any
) -> tuple[TestClient[Any, Any], MetricCache, dict[str, CountingCollector], FakeClock]:
    """An app over counting collectors on a fake clock, warmed up."""
    cache, collectors, clock = make_cache(*names)
    return await start_cache(aiohttp_client, cache, clock, **settings), cache, collectors, clock


async def start_cache(
    aiohttp_client: ClientFactory, cache: MetricCache, clock: FakeClock, **settings: Any
) -> TestClient[Any, Any]:
    """An app over a prebuilt cache, warmed up."""
    app = create_app(Settings(collectors=(), **settings), clock=clock, cache=cache)
    client = await aiohttp_client(app)
    await cache.warm_up()
    return client


# psutil's documented reading shapes (its own namedtuples live in a private module).
shwtemp = namedtuple("shwtemp", ["label", "current", "high", "critical"])
sfan = namedtuple("sfan", ["label", "current"])
sbattery = namedtuple("sbattery", ["percent", "secsleft", "power_plugged"])


def fake_psutil(**functions: object) -> types.SimpleNamespace:
    """Hardware stand-in: no sensors exist on this machine, so psutil's readings are given."""
    return types.SimpleNamespace(**functions)
