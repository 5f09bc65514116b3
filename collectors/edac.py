"""EDAC memory-controller error counters (ECC RAM) from sysfs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import BlockingCollector, CollectorError, NotApplicable, read_number
from collectors.registry import register

CONTROLLER = re.compile(r"^mc(\d+)$")
CSROW = re.compile(r"^csrow(\d+)$")
# Errors the driver could not attribute to a csrow are exported as csrow="unknown".
UNKNOWN_CSROW = "unknown"


def numbered(directory: Path, pattern: re.Pattern[str]) -> list[tuple[str, Path]]:
    """Subdirectories matching ``pattern`` as (number, path), in numeric order."""
    found = []
    for child in directory.iterdir():
        match = pattern.match(child.name)
        if match and child.is_dir():
            found.append((match.group(1), child))
    return sorted(found, key=lambda item: int(item[0]))


def add_count(family: CounterMetricFamily, labels: list[str], path: Path) -> bool:
    """Add the counter in ``path`` when it is readable; say whether it was."""
    value = read_number(path)
    if value is None:
        return False
    family.add_metric(labels, value)
    return True


@register(
    "edac",
    description="EDAC memory controller correctable/uncorrectable error counters",
    interval="5m",
    timeout="30s",
)
class EdacCollector(BlockingCollector):
    """Counters from /sys/devices/system/edac/mc/mc*."""

    def collect_blocking(self) -> Sequence[Metric]:
        """Read ce/ue counts per controller and per csrow; unreadable files are skipped."""
        root = self.ctx.sysfs / "devices" / "system" / "edac" / "mc"
        try:
            controllers = numbered(root, CONTROLLER)
        except FileNotFoundError:
            raise NotApplicable(f"{root} not found (no EDAC driver loaded)") from None
        except OSError as exc:
            raise CollectorError(f"cannot list {root}: {exc.strerror}") from None
        if not controllers:
            raise NotApplicable(f"no memory controllers under {root}")
        ce = CounterMetricFamily(
            "hw_edac_correctable_errors",
            "Correctable memory errors reported by this controller.",
            labels=["controller"],
        )
        ue = CounterMetricFamily(
            "hw_edac_uncorrectable_errors",
            "Uncorrectable memory errors reported by this controller.",
            labels=["controller"],
        )
        csrow_ce = CounterMetricFamily(
            "hw_edac_csrow_correctable_errors",
            'Correctable memory errors per chip-select row (csrow="unknown": not attributable).',
            labels=["controller", "csrow"],
        )
        csrow_ue = CounterMetricFamily(
            "hw_edac_csrow_uncorrectable_errors",
            'Uncorrectable memory errors per chip-select row (csrow="unknown": not attributable).',
            labels=["controller", "csrow"],
        )
        read = 0
        for number, path in controllers:
            read += add_count(ce, [number], path / "ce_count")
            read += add_count(ue, [number], path / "ue_count")
            read += add_count(csrow_ce, [number, UNKNOWN_CSROW], path / "ce_noinfo_count")
            read += add_count(csrow_ue, [number, UNKNOWN_CSROW], path / "ue_noinfo_count")
            try:
                csrows = numbered(path, CSROW)
            except OSError:
                csrows = []
            for row, row_path in csrows:
                read += add_count(csrow_ce, [number, row], row_path / "ce_count")
                read += add_count(csrow_ue, [number, row], row_path / "ue_count")
        if not read:
            raise CollectorError(f"no readable error counters under {root}")
        return [ce, ue, csrow_ce, csrow_ue]
