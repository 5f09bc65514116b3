"""Freshness metrics: when each collector's data was collected, and how its refreshes went.

Timestamps rather than ages, so a body stays the same between data changes (the age is the
PromQL ``time() - hwcache_collector_last_success_timestamp_seconds``).
"""

from __future__ import annotations

import platform
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter import __version__
from exporter.clock import Clock, Instant
from exporter.entry import EntryView, Result, Status

CACHE_NOTE = "Hardware metrics are served from a per-collector cache refreshed once per interval."

# Gauges per collector: name suffix and HELP text.
_GAUGES = {
    "success": "1 if the collector's last refresh succeeded (or found nothing to collect), else 0.",
    "stale": "1 if the served data is older than the collector's interval or its last refresh "
    "failed.",
    "duration_seconds": "Duration of the collector's last refresh.",
    "last_success_timestamp_seconds": "Unix time of the collector's last successful refresh. "
    f"{CACHE_NOTE} Data age: time() - this.",
    "last_attempt_timestamp_seconds": "Unix time the collector's last refresh attempt started.",
    "next_refresh_timestamp_seconds": "Unix time after which the next scrape refreshes the "
    "collector.",
    "interval_seconds": "Configured refresh interval of the collector.",
    "cached_samples": "Number of samples in the collector's cached data.",
    "unreadable_items": "Number of items the collector could not read and left out of its "
    "cached data (the log names them).",
}


def _gauge_values(entry: EntryView, now: Instant) -> dict[str, float | None]:
    """This entry's value for each gauge; ``None`` where there is nothing to say yet."""
    ok = entry.state in (Status.OK, Status.NOT_APPLICABLE)
    collected, attempted = entry.collected_at, entry.last_attempt_at
    return {
        "success": None if entry.state is Status.PENDING else float(ok),
        "stale": None
        if collected is None
        else float(entry.expired(now) or entry.state is Status.ERROR),
        "duration_seconds": entry.duration,
        "last_success_timestamp_seconds": None if collected is None else collected.wall,
        "last_attempt_timestamp_seconds": None if attempted is None else attempted.wall,
        "next_refresh_timestamp_seconds": entry.expires_at.wall,
        "interval_seconds": entry.interval,
        "cached_samples": float(entry.samples),
        "unreadable_items": float(entry.unreadable_items),
    }


def freshness_families(entries: Sequence[EntryView], now: Instant) -> list[Metric]:
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
            count = float(entry.refreshes.get(result.value, 0))
            refreshes.add_metric([entry.name, result.value], count)
    return [*gauges.values(), refreshes]


class Freshness:
    """``hwcache_collector_*`` of some cache entries (prometheus_client's collector protocol).

    Their values change only with the data, except ``stale``, which turns 1 when an entry
    expires: a response holding it is valid until the earliest expiry, no longer.
    """

    def __init__(self, entries: Sequence[EntryView], clock: Clock) -> None:
        self.entries = entries
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        yield from freshness_families(self.entries, self.clock.now())


class BuildInfo:
    """``hwcache_build_info`` with the version and Python version (collector protocol)."""

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "hwcache_build_info",
            "Build information of hwcache-exporter; always 1.",
            labels=["version", "python_version"],
        )
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield info
