"""Freshness metrics: how old each collector's cached data is, and how its refreshes went."""

from __future__ import annotations

import platform

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter import __version__
from exporter.cache import CacheEntry, Result, State

CACHE_NOTE = "Hardware metrics are served from a per-collector cache refreshed once per interval."

# Gauges per collector: name suffix and HELP text.
_GAUGES = {
    "success": "1 if the collector's last refresh succeeded (or found nothing to collect), else 0.",
    "stale": "1 if the served data is older than the collector's interval or its last refresh "
    "failed.",
    "duration_seconds": "Duration of the collector's last refresh.",
    "last_success_timestamp_seconds": "Unix time of the collector's last successful refresh.",
    "cache_age_seconds": f"Age of the collector's cached data at render time. {CACHE_NOTE}",
    "next_refresh_timestamp_seconds": "Unix time after which the next scrape refreshes the "
    "collector.",
    "interval_seconds": "Configured refresh interval of the collector.",
    "cached_samples": "Number of samples in the collector's cached data.",
    "unreadable_items": "Number of items the collector could not read and left out of its "
    "cached data (the log names them).",
}


def _gauge_values(entry: CacheEntry, now: float) -> dict[str, float | None]:
    """This entry's value for each gauge; ``None`` where there is nothing to say yet."""
    ok = entry.state in (State.OK, State.NOT_APPLICABLE)
    collected = entry.collected_at
    return {
        "success": None if entry.state is State.PENDING else float(ok),
        "stale": None
        if collected is None
        else float(entry.expired(now) or entry.state is State.ERROR),
        "duration_seconds": entry.duration,
        "last_success_timestamp_seconds": collected,
        "cache_age_seconds": None if collected is None else max(0.0, now - collected),
        "next_refresh_timestamp_seconds": entry.expires_at,
        "interval_seconds": entry.interval,
        "cached_samples": float(entry.series),
        "unreadable_items": float(entry.unreadable_items),
    }


def freshness_families(entries: list[CacheEntry], now: float) -> list[Metric]:
    """Build the ``hwcache_collector_*`` families for ``entries`` at time ``now``."""
    gauges = {
        suffix: GaugeMetricFamily(f"hwcache_collector_{suffix}", doc, labels=["collector"])
        for suffix, doc in _GAUGES.items()
    }
    refreshes = CounterMetricFamily(
        "hwcache_collector_refreshes",
        "Refreshes of the collector by result.",
        labels=["collector", "result"],
    )
    for entry in entries:
        for suffix, value in _gauge_values(entry, now).items():
            if value is not None:
                gauges[suffix].add_metric([entry.name], value)
        for result in Result:
            refreshes.add_metric([entry.name, result.value], float(entry.refreshes[result.value]))
    return [*gauges.values(), refreshes]


def build_info_family() -> Metric:
    """``hwcache_build_info`` with the version and Python version."""
    info = GaugeMetricFamily(
        "hwcache_build_info",
        "Build information of hwcache-exporter; always 1.",
        labels=["version", "python_version"],
    )
    info.add_metric([__version__, platform.python_version()], 1.0)
    return info
