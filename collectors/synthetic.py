"""A synthetic collector for benchmarks and integration tests: N samples after a delay."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import Collector, CollectorError
from collectors.registry import register
from collectors.toolkit.options import CollectorOption, Duration, Flag, Integer


@register(
    "synthetic",
    description="Synthetic samples for benchmarks and tests",
    default_enabled=False,
    interval="1h",
    timeout="60s",
    options=(
        CollectorOption("samples", "1000", "number of samples to produce", Integer(0)),
        CollectorOption(
            "delay", "0s", "how long to sleep before answering (a slow tool)", Duration()
        ),
        CollectorOption("fail", "false", "fail every collection", Flag()),
    ),
)
class SyntheticCollector(Collector):
    """Produces ``samples`` gauge samples spread over 10 families, after ``delay`` seconds."""

    async def collect(self) -> Sequence[Metric]:
        """Sleep, then return the samples (or fail when asked to)."""
        samples = self.options.integer("samples")
        await asyncio.sleep(self.options.seconds("delay"))
        if self.options.flag("fail"):
            raise CollectorError("synthetic failure requested (--collector.synthetic.fail)")
        # 100k samples take about a second to build: off the event loop, like a tool's parse.
        return await asyncio.to_thread(build_families, samples)


def build_families(samples: int) -> list[Metric]:
    """``samples`` gauge samples spread over 10 families."""
    families = [
        GaugeMetricFamily(
            f"hw_synthetic_value_{i}", "Synthetic value.", labels=["device", "sensor"]
        )
        for i in range(10)
    ]
    for n in range(samples):
        families[n % 10].add_metric([f"dev{n // 100}", f"s{n % 100}"], float(n))
    return list(families)
