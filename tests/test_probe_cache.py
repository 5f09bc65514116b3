"""Remote-target cache: LRU bound, eviction counts, poll concurrency bounds, jitter."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import Collector, CollectorContext
from exporter.clock import FakeClock
from exporter.probe_cache import ProbeBusy, ProbeCache
from exporter.probe_config import ProbeConfig, ProbeModule, load_probe_config
from exporter.probe_target import Target, parse_target


class Held(Collector):
    """Collects once released; records that it started."""

    def __init__(self) -> None:
        super().__init__(CollectorContext(timeout=30))
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def collect(self) -> Sequence[Metric]:
        self.started.set()
        await self.release.wait()
        return [GaugeMetricFamily("hw_redfish_up", "Test.", value=1)]


def config(tmp_path: Path, text: str) -> ProbeConfig:
    (tmp_path / "pass").write_text("pw")
    modules = "\n".join(
        f"""  {name}:
    driver: redfish
    username: u
    password_file: {tmp_path / "pass"}
    interval: 100s
    max_concurrent_polls: {polls}
    targets: ["127.0.0.0/8"]"""
        for name, polls in (("a", 1), ("b", 5))
    )
    (tmp_path / "c.yml").write_text(f"{text}\nmodules:\n{modules}\n")
    return load_probe_config(tmp_path / "c.yml")


class Cache:
    """A ProbeCache whose targets get Held collectors, kept by target for the test."""

    def __init__(self, cfg: ProbeConfig, rng: random.Random | None = None) -> None:
        self.held: dict[str, Held] = {}
        self.clock = FakeClock()
        self.probes = ProbeCache(cfg, self.factory, self.clock, rng=rng)

    def factory(self, module: ProbeModule, target: Target, http: aiohttp.ClientSession) -> Held:
        self.held[f"{module.name}/{target}"] = held = Held()
        return held

    def start(self, module: str, target: str) -> tuple[str, asyncio.Task[None]]:
        name = self.probes.entry(self.probes.config.modules[module], parse_target(target))
        return name, self.probes.cache.refresh(name)


async def test_lru_evicts_the_least_recently_probed_idle_target(tmp_path: Path) -> None:
    cache = Cache(config(tmp_path, "max_targets: 2"))
    for target in ("127.0.0.1", "127.0.0.2"):
        name, task = cache.start("b", target)
        cache.held[name].release.set()
        await task
    # Probed again: 127.0.0.2 is now the least recently probed.
    cache.probes.entry(cache.probes.config.modules["b"], parse_target("127.0.0.1"))
    cache.start("b", "127.0.0.3")
    assert set(cache.probes.cache.names) == {"b/127.0.0.1", "b/127.0.0.3"}
    assert cache.probes.evictions == 1
    await cache.probes.close()


async def test_targets_being_polled_are_not_evicted(tmp_path: Path) -> None:
    cache = Cache(config(tmp_path, "max_targets: 1"))
    cache.start("b", "127.0.0.1")
    with pytest.raises(ProbeBusy):
        cache.probes.entry(cache.probes.config.modules["b"], parse_target("127.0.0.2"))
    assert cache.probes.evictions == 0
    await cache.probes.close()


async def test_polls_are_bounded_per_module(tmp_path: Path) -> None:
    cache = Cache(config(tmp_path, ""))
    first, task1 = cache.start("a", "127.0.0.1")
    second, task2 = cache.start("a", "127.0.0.2")
    await cache.held[first].started.wait()
    for _ in range(5):
        await asyncio.sleep(0)  # let the second poll run as far as it can
    assert not cache.held[second].started.is_set()
    cache.held[first].release.set()
    await cache.held[second].started.wait()
    cache.held[second].release.set()
    await asyncio.gather(task1, task2)
    await cache.probes.close()


async def test_polls_are_bounded_in_total(tmp_path: Path) -> None:
    cache = Cache(config(tmp_path, "max_concurrent_polls: 2"))
    runs = [cache.start("b", f"127.0.0.{i}") for i in range(1, 4)]
    await cache.held[runs[0][0]].started.wait()
    await cache.held[runs[1][0]].started.wait()
    for _ in range(5):
        await asyncio.sleep(0)
    assert not cache.held[runs[2][0]].started.is_set()
    cache.held[runs[0][0]].release.set()
    await cache.held[runs[2][0]].started.wait()
    for name, _ in runs:
        cache.held[name].release.set()
    await asyncio.gather(*(task for _, task in runs))
    await cache.probes.close()


async def test_refresh_is_jittered_within_the_interval(tmp_path: Path) -> None:
    cache = Cache(config(tmp_path, "refresh_jitter: 0.5"), rng=random.Random(7))
    expiries = []
    for i in range(1, 6):
        name, task = cache.start("b", f"127.0.0.{i}")
        cache.held[name].release.set()
        await task
        expiries.append(cache.probes.cache.view(name).expires_at.mono - cache.clock.monotonic())
    assert all(50 <= e <= 100 for e in expiries)
    assert len(set(expiries)) == 5
    await cache.probes.close()


async def test_logouts_at_shutdown_keep_the_poll_bounds(tmp_path: Path) -> None:
    cache = Cache(config(tmp_path, ""))
    active, peak, closed = [0], [0], [0]

    class LoggingOut(Held):
        async def close(self) -> None:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            for _ in range(5):
                await asyncio.sleep(0)  # a logout in flight: others may start meanwhile
            active[0] -= 1
            closed[0] += 1

    cache.probes.factory = lambda module, target, http: LoggingOut()
    for i in range(1, 4):  # module a allows one poll at a time
        cache.probes.entry(cache.probes.config.modules["a"], parse_target(f"127.0.0.{i}"))
    await cache.probes.close()
    assert (closed[0], peak[0]) == (3, 1)
