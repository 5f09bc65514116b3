"""Snapshot test helpers: owned caches, round trips and a running exporter with --cache.dir."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from exporter import __version__
from exporter.cache import CacheEntry, MetricCache
from exporter.clock import FakeClock
from exporter.snapshot_codec import capture_entries, encode_document, parse_document
from tests.doubles import CountingCollector
from tests.support import FIXTURE_ARGS, Exporter

CONTEXT: dict[str, Any] = {"exporter_version": __version__, "boot_id": "b1", "sources": {}}


def mixed_families() -> list[Any]:
    gauge = GaugeMetricFamily("hw_t_temp", "Temp.", labels=["device"], unit="celsius")
    gauge.add_metric(["sda"], 31.5)
    gauge.add_metric(['we"ird\\dev\n'], math.inf)
    gauge.add_metric(["nan"], math.nan)
    counter = CounterMetricFamily("hw_t_errors", "Errors.", labels=["device"])
    counter.add_metric(["sda"], 7)
    info = InfoMetricFamily("hw_t_disk", "Disk inventory.", labels=["device"])
    info.add_metric(["sda"], {"model": "HGST ünïcode", "serial": "X1"})
    return [gauge, counter, info]


def owned_cache(
    *names: str, interval: float = 60.0
) -> tuple[MetricCache, dict[str, CountingCollector], FakeClock]:
    """Counting collectors in entries named ``test_<n>``, owners of their ``hw_test_<n>_value``."""
    clock = FakeClock()
    collectors = {f"test_{n}": CountingCollector(n) for n in names}
    entries = [CacheEntry(name, c, interval, 5.0) for name, c in collectors.items()]
    return MetricCache(entries, clock, error_retry_interval=30.0), collectors, clock


async def filled_cache(*names: str, interval: float = 60.0) -> MetricCache:
    cache, _, _ = owned_cache(*names, interval=interval)
    await cache.warm_up()
    return cache


def snapshot_bytes(cache: MetricCache, options: dict[str, dict[str, str]] | None = None) -> bytes:
    return encode_document(capture_entries(cache, options or {}), CONTEXT)


def roundtrip(cache: MetricCache) -> dict[str, Any]:
    return parse_document(snapshot_bytes(cache), CONTEXT)


def fixture_args(cache_dir: Path, *collectors: str) -> list[str]:
    return [*FIXTURE_ARGS, *(f"--collector.{c}" for c in collectors), f"--cache.dir={cache_dir}"]


def cache_stats(exporter: Exporter) -> dict[str, Any]:
    status, body = exporter.get("/cache/stats")
    assert status == 200
    return dict(json.loads(body))


def hw_lines(exporter: Exporter) -> list[str]:
    status, body = exporter.get("/metrics")
    assert status == 200
    return sorted(line for line in body.decode().splitlines() if line.startswith("hw_"))


def stop(exporter: Exporter) -> None:
    exporter.proc.terminate()
    assert exporter.proc.wait(timeout=15) == 0, exporter.logs()
