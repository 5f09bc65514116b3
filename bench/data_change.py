"""What a data change costs: the render and gzip alone, and a real server's first scrape."""

from __future__ import annotations

import asyncio
import gzip
import statistics
import time
import urllib.request
from collections.abc import Callable
from functools import partial

from prometheus_client.metrics_core import Metric

from collectors.synthetic import SyntheticCollector
from exporter.formats import PLAIN, PROMETHEUS
from exporter.render import GZIP_LEVEL, encode


def timed_get(port: int, headers: dict[str, str]) -> float:
    """Seconds until a whole /metrics response is read."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as resp:
        resp.read()
    return time.perf_counter() - started


def data_change_scrape(port: int, headers: dict[str, str]) -> float:
    """Seconds from a data change to its first scrape answered: collect, render, join, gzip."""
    invalidate = f"http://127.0.0.1:{port}/cache/invalidate?refresh=next"
    for _ in range(2):  # the first round leaves only this format as the one asked for
        timed_get(port, headers)
        urllib.request.urlopen(urllib.request.Request(invalidate, method="POST"), timeout=30)
    return timed_get(port, headers)


def collect_once(collector: SyntheticCollector) -> object:
    """One collection (the synthetic collector's own share of a data change)."""
    return asyncio.run(collector.collect())


def median_time(work: Callable[[], object], runs: int = 3) -> float:
    """Median seconds of ``work``."""
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def render_costs(families: list[Metric]) -> dict[str, float]:
    """Milliseconds to encode ``families`` as text and OpenMetrics, and to gzip the latter."""
    om = encode(families, PROMETHEUS)
    return {
        "render_text_ms": median_time(partial(encode, families, PLAIN)) * 1000,
        "render_om_ms": median_time(partial(encode, families, PROMETHEUS)) * 1000,
        "gzip_om_ms": median_time(partial(gzip.compress, om, GZIP_LEVEL, mtime=0)) * 1000,
    }
