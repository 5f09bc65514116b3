"""Power-mode policy of the smart collector: which sleeping disks smartctl may skip.

smartctl's ``--nocheck=MODE`` skips a disk (exit status 2) that is in MODE or a lower power
state: ``sleep`` < ``standby`` < ``idle``; ``never`` always reads and may wake it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.toolkit.options import OptionKind

POWER_MODES = ("never", "sleep", "standby", "idle")


def parse_overrides(text: str) -> dict[str, str]:
    """``LABEL=MODE,...`` as a mapping; a ``ValueError`` names a malformed entry."""
    overrides: dict[str, str] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        label, sep, mode = entry.rpartition("=")
        if not sep or not label.strip():
            raise ValueError(f"{entry!r} is not DEVICE=MODE (e.g. sdb=never)")
        if mode.strip() not in POWER_MODES:
            raise ValueError(f"{entry!r}: mode must be one of {', '.join(POWER_MODES)}")
        overrides[label.strip().removeprefix("/dev/")] = mode.strip()
    return overrides


class PowerModeOverrides(OptionKind):
    """Comma-separated ``DEVICE=MODE`` entries, DEVICE being the ``device`` label."""

    name: ClassVar[str] = "DEVICE=MODE,..."

    def canonical(self, text: str) -> str:
        """The entries unchanged, once every one parses."""
        parse_overrides(text)
        return text

    def parse(self, text: str) -> object:
        """Device label → mode."""
        return parse_overrides(text)


def nocheck_args(label: str, default: str, overrides: Mapping[str, str]) -> list[str]:
    """smartctl arguments for ``label``'s power-mode policy (none for ``never``)."""
    mode = overrides.get(label, default)
    return [] if mode == "never" else [f"--nocheck={mode}"]


def last_read_family(last_read: Mapping[str, float], devices: Sequence[str]) -> Metric:
    """``hw_smart_device_last_read_timestamp_seconds`` of ``devices`` read at least once."""
    family = GaugeMetricFamily(
        "hw_smart_device_last_read_timestamp_seconds",
        "Unix time smartctl last read the disk's data (older than the collection while it "
        "sleeps: its values are the last ones read awake).",
        labels=["device"],
    )
    for device in devices:
        if device in last_read:
            family.add_metric([device], last_read[device])
    return family
