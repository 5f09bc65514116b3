"""CPU inventory: model, core counts, frequency range."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import BlockingCollector, read_number, read_text
from collectors.registry import register


def parse_cpuinfo(text: str) -> tuple[dict[str, str], int, int, int]:
    """First processor's fields, logical CPUs, physical cores and sockets from /proc/cpuinfo."""
    first: dict[str, str] = {}
    logical, cores, sockets = 0, set(), set()
    block: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if "processor" in block:
                logical += 1
                first = first or block
                socket = block.get("physical id", "0")
                sockets.add(socket)
                cores.add((socket, block.get("core id", block["processor"])))
            block = {}
            continue
        key, _, value = line.partition(":")
        block[key.strip()] = value.strip()
    return first, logical, len(cores), len(sockets)


def frequency_range(cpu_dir: Path) -> tuple[float, float]:
    """Lowest min and highest max frequency (Hz) over all CPUs' cpufreq, 0 when unknown."""
    lows, highs = [], []
    for freq in cpu_dir.glob("cpu[0-9]*/cpufreq"):
        low = read_number(freq / "cpuinfo_min_freq") or read_number(freq / "scaling_min_freq")
        high = read_number(freq / "cpuinfo_max_freq") or read_number(freq / "scaling_max_freq")
        if low:
            lows.append(low * 1000)
        if high:
            highs.append(high * 1000)
    return (min(lows, default=0.0), max(highs, default=0.0))


@register(
    "cpu",
    description="CPU model, physical/logical cores and min/max frequency",
    interval="6h",
    timeout="30s",
)
class CpuCollector(BlockingCollector):
    """CPU inventory from cpuinfo under --path.procfs and cpufreq under --path.sysfs."""

    def collect_blocking(self) -> Sequence[Metric]:
        """Read cpuinfo and psutil's counts and frequency range."""
        first, logical, physical, sockets = parse_cpuinfo(
            read_text(self.ctx.procfs / "cpuinfo") or ""
        )
        info = InfoMetricFamily("hw_cpu", "CPU model as reported by /proc/cpuinfo.")
        info.add_metric(
            [],
            {
                "model_name": first.get("model name", first.get("cpu model", "unknown")),
                "vendor": first.get("vendor_id", "unknown"),
            },
        )
        families: list[Metric] = [info]
        psutil = self.ctx.psutil
        logical = logical or psutil.cpu_count(logical=True) or 0
        physical = physical or psutil.cpu_count(logical=False) or 0
        for name, doc, value in (
            ("hw_cpu_logical_cores", "Number of logical CPUs.", logical),
            ("hw_cpu_physical_cores", "Number of physical CPU cores.", physical),
            ("hw_cpu_sockets", "Number of CPU sockets (physical packages).", sockets),
        ):
            if value:
                families.append(GaugeMetricFamily(name, doc, value=float(value)))
        low, high = frequency_range(self.ctx.sysfs / "devices" / "system" / "cpu")
        if high:
            families.append(
                GaugeMetricFamily("hw_cpu_frequency_min_hertz", "Minimum CPU frequency.", value=low)
            )
            families.append(
                GaugeMetricFamily(
                    "hw_cpu_frequency_max_hertz", "Maximum CPU frequency.", value=high
                )
            )
        return families
