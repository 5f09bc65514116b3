"""Freshness metrics: how old each collector's cached data is, and how its refreshes went."""

from __future__ import annotations

import platform

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter import __version__
from exporter.cache import CacheEntry, Result, State

CACHE_NOTE = "Hardware metrics are served from a per-collector cache refreshed once per interval."


def freshness_families(entries: list[CacheEntry], now: float) -> list[Metric]:
    """Build the ``hwcache_collector_*`` families for ``entries`` at time ``now``."""
    success = GaugeMetricFamily(
        "hwcache_collector_success",
        "1 if the collector's last refresh succeeded (or found nothing to collect), else 0.",
        labels=["collector"],
    )
    stale = GaugeMetricFamily(
        "hwcache_collector_stale",
        "1 if the served data is older than the collector's interval or its last refresh failed.",
        labels=["collector"],
    )
    duration = GaugeMetricFamily(
        "hwcache_collector_duration_seconds",
        "Duration of the collector's last refresh.",
        labels=["collector"],
    )
    last_success = GaugeMetricFamily(
        "hwcache_collector_last_success_timestamp_seconds",
        "Unix time of the collector's last successful refresh.",
        labels=["collector"],
    )
    age = GaugeMetricFamily(
        "hwcache_collector_cache_age_seconds",
        f"Age of the collector's cached data at render time. {CACHE_NOTE}",
        labels=["collector"],
    )
    next_refresh = GaugeMetricFamily(
        "hwcache_collector_next_refresh_timestamp_seconds",
        "Unix time after which the next scrape refreshes the collector.",
        labels=["collector"],
    )
    interval = GaugeMetricFamily(
        "hwcache_collector_interval_seconds",
        "Configured refresh interval of the collector.",
        labels=["collector"],
    )
    series = GaugeMetricFamily(
        "hwcache_collector_cached_samples",
        "Number of samples in the collector's cached data.",
        labels=["collector"],
    )
    refreshes = CounterMetricFamily(
        "hwcache_collector_refreshes",
        "Refreshes of the collector by result.",
        labels=["collector", "result"],
    )
    for entry in entries:
        name = [entry.name]
        if entry.state is not State.PENDING:
            ok = entry.state in (State.OK, State.NOT_APPLICABLE)
            success.add_metric(name, 1.0 if ok else 0.0)
        if entry.has_data:
            expired = entry.expired(now) or entry.state is State.ERROR
            stale.add_metric(name, 1.0 if expired else 0.0)
        if entry.duration is not None:
            duration.add_metric(name, entry.duration)
        if entry.collected_at is not None:
            last_success.add_metric(name, entry.collected_at)
            age.add_metric(name, max(0.0, now - entry.collected_at))
        next_refresh.add_metric(name, entry.expires_at)
        interval.add_metric(name, entry.interval)
        series.add_metric(name, float(entry.series))
        for result in Result:
            refreshes.add_metric([entry.name, result.value], float(entry.refreshes[result.value]))
    return [success, stale, duration, last_success, age, next_refresh, interval, series, refreshes]


def build_info_family() -> Metric:
    """``hwcache_build_info`` with the version and Python version."""
    info = GaugeMetricFamily(
        "hwcache_build_info",
        "Build information of hwcache-exporter; always 1.",
        labels=["version", "python_version"],
    )
    info.add_metric([__version__, platform.python_version()], 1.0)
    return info
