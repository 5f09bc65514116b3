"""Memory inventory: RAM and swap size."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import BlockingCollector
from collectors.registry import register


@register("memory", description="RAM and swap size", interval="6h", timeout="30s")
class MemoryCollector(BlockingCollector):
    """Installed memory via psutil (reads meminfo under --path.procfs)."""

    def collect_blocking(self) -> Sequence[Metric]:
        """Return total RAM and swap."""
        psutil = self.ctx.psutil
        with warnings.catch_warnings():
            # psutil warns when vmstat's swap-in/out counters are missing; only totals matter here.
            warnings.simplefilter("ignore", RuntimeWarning)
            ram, swap = psutil.virtual_memory().total, psutil.swap_memory().total
        return [
            GaugeMetricFamily(
                "hw_memory_total_bytes",
                "Total usable RAM.",
                value=float(ram),
            ),
            GaugeMetricFamily(
                "hw_memory_swap_total_bytes",
                "Total swap space.",
                value=float(swap),
            ),
        ]
