"""Remote targets' cache: one MetricCache entry per (module, target), LRU- and poll-bounded."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

import aiohttp
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import Collector, CollectorContext, Skipped
from collectors.ipmi_lan import ipmi_driver
from collectors.redfish import redfish_driver
from collectors.toolkit.runner import CommandRunner
from exporter.cache import CacheEntry, MetricCache
from exporter.clock import Clock, Instant, system_clock
from exporter.entry import EntryView, Result
from exporter.families import REMOTE
from exporter.probe_config import ProbeConfig, ProbeModule
from exporter.probe_responses import ProbeResponses
from exporter.probe_target import Target, parse_target

log = logging.getLogger(__name__)
LOGOUT_BUDGET = 5.0  # seconds at shutdown for logging out of the cached targets' sessions

# Builds a target's collector: module, target, the module's HTTP client session.
DriverFactory = Callable[[ProbeModule, Target, aiohttp.ClientSession], Collector]


class ProbeBusy(Exception):
    """Every cached target is being polled: no entry can be evicted for a new one."""


class RemoteCache(MetricCache):
    """A MetricCache whose entries all serve the same family names, refreshed with jitter."""

    def __init__(self, clock: Clock, retry: float, jitter: float, rng: random.Random) -> None:
        super().__init__([], clock, retry)
        self.jitter = jitter
        self.rng = rng

    def _clash(self, entry: CacheEntry, families: tuple[Metric, ...]) -> str | None:
        return None  # every target of a driver serves the same names, labelled by scrape

    def _expiry(self, view: EntryView, now: Instant, result: Result) -> Instant:
        expiry = super()._expiry(view, now, result)
        if result is Result.SUCCESS:  # spread targets added together over the interval
            return expiry.after(-self.rng.uniform(0.0, self.jitter * view.interval))
        return expiry

    def add(self, entry: CacheEntry) -> None:
        """Cache a new target's entry."""
        self._entries[entry.view.name] = entry

    def evict(self, name: str) -> Collector | None:
        """Forget ``name``'s entry unless it is being polled; its collector if forgotten."""
        if self._entries[name].inflight is not None:
            return None
        return self._entries.pop(name).collector

    def collectors(self) -> list[Collector]:
        """Every cached target's collector."""
        return [entry.collector for entry in self._entries.values()]


class Gated(Collector):
    """A target's collector that polls only within its module's and the global poll bounds."""

    def __init__(self, inner: Collector, gates: Sequence[asyncio.Semaphore]) -> None:
        super().__init__(inner.ctx)
        self.inner = inner
        self.gates = gates

    async def collect(self) -> Sequence[Metric]:
        """Wait for a poll slot of each gate, then collect."""
        async with self.gates[0], self.gates[1]:
            return await self.inner.collect()

    def take_skipped(self) -> Skipped:
        """The inner collector's skipped items."""
        return self.inner.take_skipped()

    async def close(self) -> None:
        """Release the inner collector's session, within the same bounds as a poll."""
        async with self.gates[0], self.gates[1]:
            await self.inner.close()


class ProbeCache:
    """Entries created on first probe, evicted least recently probed first."""

    def __init__(
        self,
        config: ProbeConfig,
        factory: DriverFactory,
        clock: Clock = system_clock,
        error_retry_interval: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.factory = factory
        self.cache = RemoteCache(
            clock, error_retry_interval, config.refresh_jitter, rng or random.Random()
        )
        self.evictions = 0
        self.responses = ProbeResponses()
        self._order: OrderedDict[str, None] = OrderedDict()
        self._total = asyncio.Semaphore(config.max_concurrent_polls)
        self._gates = {
            name: asyncio.Semaphore(m.max_concurrent_polls) for name, m in config.modules.items()
        }
        self._http: dict[str, aiohttp.ClientSession] = {}
        self._closing: set[asyncio.Task[None]] = set()  # logouts of evicted targets

    @staticmethod
    def key(module: ProbeModule, target: Target) -> str:
        """The cache entry name of (module, target)."""
        return f"{module.name}/{target}"

    def entry(self, module: ProbeModule, target: Target) -> str:
        """The entry name of (module, target), created (evicting the LRU idle one) if needed."""
        key = self.key(module, target)
        if key in self.cache:
            self._order.move_to_end(key)
            return key
        while len(self.cache) >= self.config.max_targets:
            self._evict_one()
        inner = self.factory(module, target, self._session(module))
        gated = Gated(inner, (self._total, self._gates[module.name]))
        self.cache.add(CacheEntry(key, gated, module.interval, module.timeout, namespace=REMOTE))
        self._order[key] = None
        return key

    def resolve(self, name: str) -> tuple[ProbeModule, Target] | None:
        """The module and target of entry ``name`` if still configured and allowed."""
        module_name, _, text = name.rpartition("/")
        module = self.config.modules.get(module_name)
        try:
            target = parse_target(text)
        except ValueError:
            return None
        return (module, target) if module is not None and module.allows(target) else None

    def drop(self, name: str) -> None:
        """Forget an idle entry that holds no session (a restore that was refused)."""
        if self.cache.evict(name) is not None:
            self._order.pop(name, None)

    def collect(self) -> Iterator[Metric]:
        """``hwcache_probe_*`` for /metrics: size and evictions of the target cache."""
        yield GaugeMetricFamily(
            "hwcache_probe_targets",
            "Remote targets in the cache (bounded by max_targets).",
            value=len(self.cache),
        )
        yield CounterMetricFamily(
            "hwcache_probe_evictions",
            "Remote targets evicted from the cache, least recently probed first.",
            value=self.evictions,
        )

    def _evict_one(self) -> None:
        for key in self._order:
            evicted = self.cache.evict(key)
            if evicted is not None:
                del self._order[key]
                self.evictions += 1
                task = asyncio.create_task(_close_quietly(evicted))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
                return
        raise ProbeBusy(f"all {len(self._order)} cached targets are being polled")

    def _session(self, module: ProbeModule) -> aiohttp.ClientSession:
        session = self._http.get(module.name)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(ssl=tls_context(module), limit=64)
            session = aiohttp.ClientSession(connector=connector, trust_env=False)
            self._http[module.name] = session
        return session

    async def close(self) -> None:
        """Cancel polls in flight, log out of the targets (bounded), close the HTTP sessions."""
        await self.cache.close()
        closing = [
            *self._closing,
            *(asyncio.create_task(_close_quietly(c)) for c in self.cache.collectors()),
        ]
        if closing:
            _, late = await asyncio.wait(closing, timeout=LOGOUT_BUDGET)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if late:
                log.info(
                    "%d of %d logouts unfinished after %gs", len(late), len(closing), LOGOUT_BUDGET
                )
        for session in self._http.values():
            await session.close()


async def _close_quietly(collector: Collector) -> None:
    """Close a collector; a failure is only logged (the BMC expires the session anyway)."""
    try:
        await collector.close()
    except Exception as exc:
        log.debug("closing %s failed: %s", type(collector).__name__, exc)


def driver_factory(runner: CommandRunner) -> DriverFactory:
    """Builds the collector of ``module.driver`` for one target; tools run with ``runner``."""

    def build(module: ProbeModule, target: Target, http: aiohttp.ClientSession) -> Collector:
        if module.driver == "ipmi":
            return ipmi_driver(module, target, CollectorContext(runner=runner))
        return redfish_driver(module, target, http)

    return build


def tls_context(module: ProbeModule) -> ssl.SSLContext | bool:
    """Verification against the system CAs, ``ca_file``, or none (``tls_verify: false``)."""
    if module.scheme != "https":
        return True
    if not module.tls_verify:
        return False
    return ssl.create_default_context(cafile=str(module.ca_file) if module.ca_file else None)
