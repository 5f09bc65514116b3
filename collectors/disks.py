"""Block devices: size, model, vendor, rotational, from sysfs."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import BlockingCollector, NotApplicable, read_number, read_text
from collectors.registry import register
from collectors.toolkit.options import CollectorOption, Regex

SECTOR = 512


@register(
    "disks",
    description="Block devices: size, model, vendor, rotational",
    interval="1h",
    timeout="30s",
    options=(
        CollectorOption(
            "device-exclude",
            r"^(ram|loop|fd|zram|sr|md|dm-|nbd)\d*",
            "regex of block device names to skip",
            Regex(),
        ),
    ),
)
class DisksCollector(BlockingCollector):
    """Reads sys/block/* under --path.sysfs; never opens the devices (no spin-up)."""

    def collect_blocking(self) -> Sequence[Metric]:
        """Return size and identity of each block device."""
        block = self.ctx.sysfs / "block"
        if not block.is_dir():
            raise NotApplicable(f"{block} not found")
        exclude = self.options.regex("device-exclude")
        size = GaugeMetricFamily("hw_disk_size_bytes", "Block device size.", labels=["device"])
        rotational = GaugeMetricFamily(
            "hw_disk_rotational", "1 for spinning disks, 0 for solid state.", labels=["device"]
        )
        info = InfoMetricFamily(
            "hw_disk", "Block device identity from sysfs.", labels=["device", "model", "vendor"]
        )
        for dev in sorted(block.iterdir(), key=lambda p: p.name):
            if exclude and exclude.search(dev.name):
                continue
            sectors = read_number(dev / "size")
            if sectors is not None:
                size.add_metric([dev.name], sectors * SECTOR)
            rot = read_number(dev / "queue" / "rotational")
            if rot is not None:
                rotational.add_metric([dev.name], rot)
            info.add_metric(
                [
                    dev.name,
                    read_text(dev / "device" / "model") or "",
                    read_text(dev / "device" / "vendor") or "",
                ],
                {},
            )
        return [size, rotational, info]
