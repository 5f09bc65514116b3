"""Simulated Prometheus: a scrape every 15 s for hours of fake-clock time; share of cache hits.

The exporter is the real app on a loopback aiohttp server; its collectors are stand-ins with
the registry's default intervals (their data changes at every refresh, the worst case), and
the clock is a fake one advanced 15 s between scrapes. Usage: ``python bench/scrape_sim.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collectors.registry import load_all  # noqa: E402
from collectors.toolkit.durations import parse_duration  # noqa: E402
from exporter.app import create_app  # noqa: E402
from exporter.cache import CacheEntry, MetricCache  # noqa: E402
from exporter.clock import FakeClock  # noqa: E402
from exporter.keys import RESPONSE_CACHE  # noqa: E402
from exporter.settings import Settings  # noqa: E402
from tests.doubles import CountingCollector  # noqa: E402

PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}


def default_intervals() -> dict[str, float]:
    """Every default-enabled collector of the registry and its default interval."""
    return {
        name: parse_duration(spec.interval)
        for name, spec in sorted(load_all().items())
        if spec.default_enabled
    }


async def simulate(
    intervals: dict[str, float], hours: float, every: float = 15.0
) -> dict[str, float]:
    """Scrape every ``every`` s for ``hours``; hits, misses and data changes seen."""
    clock = FakeClock()
    entries = [CacheEntry(n, CountingCollector(n, 50), i, 5.0) for n, i in intervals.items()]
    cache = MetricCache(entries, clock)
    app = create_app(Settings(collectors=()), clock=clock, cache=cache)
    scrapes = int(hours * 3600 / every)
    async with TestServer(app) as server, ClientSession() as session:
        await cache.warm_up()
        url = server.make_url("/metrics")
        for _ in range(scrapes):
            async with session.get(url, headers=PROMETHEUS_HEADERS) as resp:
                assert resp.status == 200
                await resp.read()
            clock.advance(every)
        rc = app[RESPONSE_CACHE]
        return {
            "scrapes": scrapes,
            "hits": rc.hits,
            "misses": rc.misses,
            "hit_ratio": rc.hits / max(1, rc.hits + rc.misses),
            "shortest_interval_s": min(intervals.values()),
        }


PROFILES = {
    "bench synthetic collector (24h)": lambda: {"synthetic": 86400.0},
    "inventory + SMART/NVMe host (defaults of cpu, disks, dmi, memory, nvme, smart, system)": (
        lambda: {
            n: i
            for n, i in default_intervals().items()
            if n in {"cpu", "disks", "dmi", "memory", "nvme", "smart", "system"}
        }
    ),
    "every default-enabled collector (includes 1m: gpu, hwmon, mdraid)": default_intervals,
}


def run(hours: float) -> list[dict[str, object]]:
    """Every profile, printed and returned."""
    rows: list[dict[str, object]] = []
    for profile, intervals in PROFILES.items():
        result = asyncio.run(simulate(intervals(), hours))
        rows.append({"profile": profile, "hours": hours, **result})
        print(
            f"  15 s scrapes, {hours:g} h, {profile}: {result['hit_ratio']:.2%} hits "
            f"({result['hits']:.0f}/{result['scrapes']:.0f})"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--hours", type=float, default=24.0)
    run(parser.parse_args().hours)


if __name__ == "__main__":
    main()
