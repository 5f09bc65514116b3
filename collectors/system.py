"""System identity: boot time, kernel and OS release."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import BlockingCollector, read_text
from collectors.registry import register


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release(5) ``KEY="value"`` lines."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            try:
                parts = shlex.split(value)
            except ValueError:
                parts = [value]
            fields[key.strip()] = parts[0] if parts else ""
    return fields


@register(
    "system",
    description="Boot time, kernel release and OS release",
    interval="1h",
    timeout="30s",
)
class SystemCollector(BlockingCollector):
    """Boot time from psutil, kernel from procfs, OS from os-release under --path.rootfs."""

    def collect_blocking(self) -> Sequence[Metric]:
        """Return boot time and an info metric of kernel and OS release."""
        root = self.ctx.rootfs
        os_release = read_text(root / "etc" / "os-release") or read_text(
            root / "usr" / "lib" / "os-release"
        )
        fields = parse_os_release(os_release or "")
        kernel = os.uname()
        info = InfoMetricFamily("hw_system", "Kernel and operating system release.")
        info.add_metric(
            [],
            {
                "kernel_release": read_text(self.ctx.procfs / "sys" / "kernel" / "osrelease")
                or kernel.release,
                "machine": kernel.machine,
                "os_id": fields.get("ID", ""),
                "os_name": fields.get("NAME", ""),
                "os_version_id": fields.get("VERSION_ID", ""),
                "os_pretty_name": fields.get("PRETTY_NAME", ""),
            },
        )
        boot = GaugeMetricFamily(
            "hw_system_boot_time_seconds",
            "Unix time the system booted.",
            value=float(self.ctx.psutil.boot_time()),
        )
        return [boot, info]
