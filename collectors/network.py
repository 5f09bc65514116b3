"""Network interfaces: link speed, MTU, duplex, up."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import BlockingCollector
from collectors.registry import register
from collectors.toolkit.options import CollectorOption, Regex

DUPLEX = {0: "unknown", 1: "half", 2: "full"}


@register(
    "network",
    description="NIC link speed, MTU, duplex and up state",
    interval="5m",
    timeout="30s",
    options=(
        CollectorOption(
            "device-exclude", r"^(lo|veth.*|docker\d*|br-.*)$", "regex of NICs to skip", Regex()
        ),
    ),
)
class NetworkCollector(BlockingCollector):
    """psutil's interface stats."""

    def collect_blocking(self) -> Sequence[Metric]:
        """Return per-NIC speed, MTU, duplex and up state."""
        exclude = self.options.regex("device-exclude")
        labels = ["device"]
        speed = GaugeMetricFamily(
            "hw_network_speed_bytes", "Negotiated link speed in bytes per second.", labels=labels
        )
        mtu = GaugeMetricFamily("hw_network_mtu_bytes", "Interface MTU.", labels=labels)
        up = GaugeMetricFamily("hw_network_up", "1 if the interface is up.", labels=labels)
        info = InfoMetricFamily("hw_network", "Interface duplex mode.", labels=["device", "duplex"])
        for name, stats in sorted(self.ctx.psutil.net_if_stats().items()):
            if exclude and exclude.search(name):
                continue
            if stats.speed > 0:
                speed.add_metric([name], stats.speed * 1_000_000 / 8)
            mtu.add_metric([name], float(stats.mtu))
            up.add_metric([name], 1.0 if stats.isup else 0.0)
            info.add_metric([name, DUPLEX.get(int(stats.duplex), "unknown")], {})
        return [speed, mtu, up, info]
