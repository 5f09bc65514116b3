"""Hardware monitoring chips (temperatures, fans, voltages, power, current) from sysfs."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import BlockingCollector, CollectorError, NotApplicable, read_number, read_text
from collectors.registry import register
from collectors.toolkit.options import CollectorOption, Regex

SENSOR_FILE = re.compile(r"^(temp|fan|in|power|curr|intrusion)(\d+)_([a-z_]+)$")
HWMON_DIR = re.compile(r"^hwmon(\d+)$")
UNSAFE = re.compile(r"[^a-z0-9:_]")
# (metric suffix, HELP, sensor type, sysfs properties tried in order, scale to base unit)
READINGS = (
    ("temperature_celsius", "Temperature.", "temp", ("input",), 1e-3),
    ("temperature_max_celsius", "High temperature limit.", "temp", ("max",), 1e-3),
    ("temperature_critical_celsius", "Critical temperature limit.", "temp", ("crit",), 1e-3),
    ("fan_speed_rpm", "Fan speed.", "fan", ("input",), 1.0),
    ("voltage_volts", "Voltage.", "in", ("input",), 1e-3),
    ("power_watts", "Power (instantaneous, else average).", "power", ("input", "average"), 1e-6),
    ("current_amperes", "Current.", "curr", ("input",), 1e-3),
)


@dataclass
class Chip:
    """One /sys/class/hwmon/hwmonN entry."""

    hwmon: str
    path: Path
    device: Path | None
    name: str
    base: str
    label: str = ""


def clean(text: str) -> str:
    """A label-safe token: lower case, [a-z0-9:_] only."""
    return UNSAFE.sub("_", text.lower()).strip("_")


def printable(text: str) -> str:
    """Drop control characters some drivers leave in label files."""
    return "".join(char for char in text if char.isprintable()).strip()


def follow(path: Path) -> Path | None:
    """Resolve a sysfs link; a fixture tree unpacked without symlinks stores the target as text."""
    if path.is_symlink() or path.is_dir():
        return path.resolve() if path.exists() else None
    if path.is_file():
        target = read_text(path) or ""
        if target.startswith("..") and "\n" not in target:
            resolved = (path.parent / target).resolve()
            return resolved if resolved.is_dir() else None
    return None


def chip_base(hwmon: str, name: str, device: Path | None) -> str:
    """Stable chip label: <bus>_<device> from the device path, else the name, else hwmonN."""
    if device is not None:
        parts = [clean(device.parent.name), clean(device.name)]
        base = "_".join(part for part in parts if part)
        if base:
            return base
    return clean(name) or hwmon


def discover(class_dir: Path) -> list[Chip]:
    """Every hwmon chip with its resolved directory, device and name."""
    chips = []
    for entry in class_dir.iterdir():
        if not HWMON_DIR.match(entry.name):
            continue
        path = follow(entry)
        if path is None:
            continue
        device = follow(path / "device")
        name = read_text(path / "name")
        if not name and device is not None:
            name = read_text(device / "name")  # older drivers keep attributes on the device
        name = printable(name or "")
        chips.append(Chip(entry.name, path, device, name, chip_base(entry.name, name, device)))
    chips.sort(key=lambda chip: int(chip.hwmon[5:]))
    return chips


def assign_labels(chips: list[Chip]) -> None:
    """Make chip labels unique: several hwmon nodes can hang off one device."""
    bases = Counter(chip.base for chip in chips)
    named = Counter((chip.base, clean(chip.name)) for chip in chips)
    for chip in chips:
        chip.label = chip.base
        if bases[chip.base] > 1:
            suffix = clean(chip.name)
            if not suffix or named[(chip.base, suffix)] > 1:
                suffix = chip.hwmon
            chip.label = f"{chip.base}_{suffix}"


def sensor_files(chip: Chip) -> dict[str, dict[str, Path]]:
    """sensor ("temp1") -> property ("input") -> file; the hwmon dir wins over the device dir."""
    files: dict[str, dict[str, Path]] = {}
    for directory in (chip.path, chip.device):
        if directory is None:
            continue
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            continue
        for entry in entries:
            match = SENSOR_FILE.match(entry.name)
            if match:
                props = files.setdefault(match.group(1) + match.group(2), {})
                props.setdefault(match.group(3), entry)
    return files


def sensor_order(sensor: str) -> tuple[str, int]:
    """Sort temp2 before temp10."""
    match = re.match(r"^([a-z]+)(\d+)$", sensor)
    return (match.group(1), int(match.group(2))) if match else (sensor, 0)


@register(
    "hwmon",
    description="hwmon chips: temperatures, limits, fans, voltages, power, current, alarms",
    interval="1m",
    timeout="30s",
    options=(
        CollectorOption(
            "chip-include",
            "",
            "regex (searched) of chips to read, matched against the chip label and its name",
            Regex(),
        ),
        CollectorOption(
            "chip-exclude",
            "",
            "regex (searched) of chips to skip, matched against the chip label and its name",
            Regex(),
        ),
    ),
)
class HwmonCollector(BlockingCollector):
    """Sensors under /sys/class/hwmon, honouring --path.sysfs."""

    def chips(self) -> list[Chip]:
        """Discovered chips with unique labels, filtered by the include/exclude options."""
        include = self.options.regex("chip-include")
        exclude = self.options.regex("chip-exclude")
        class_dir = self.ctx.sysfs / "class" / "hwmon"
        try:
            chips = discover(class_dir)
        except FileNotFoundError:
            raise NotApplicable(f"{class_dir} not found (no hwmon drivers)") from None
        except OSError as exc:
            raise CollectorError(f"cannot list {class_dir}: {exc.strerror}") from None
        if not chips:
            raise NotApplicable(f"no hwmon chips in {class_dir}")
        assign_labels(chips)

        def matches(pattern: re.Pattern[str], chip: Chip) -> bool:
            return any(pattern.search(text) for text in (chip.label, chip.name) if text)

        return [
            chip
            for chip in chips
            if (include is None or matches(include, chip))
            and (exclude is None or not matches(exclude, chip))
        ]

    def collect_blocking(self) -> Sequence[Metric]:
        """Read every selected chip's sensors; unreadable files are skipped."""
        labels = ["chip", "sensor"]
        readings = {
            suffix: GaugeMetricFamily(f"hw_hwmon_{suffix}", doc, labels=labels)
            for suffix, doc, *_ in READINGS
        }
        chip_info = InfoMetricFamily(
            "hw_hwmon_chip", "Chip label to the driver's chip name.", labels=["chip", "chip_name"]
        )
        sensor_info = InfoMetricFamily(
            "hw_hwmon_sensor", "Sensor label from the driver (<sensor>_label).", labels=labels
        )
        alarm = GaugeMetricFamily(
            "hw_hwmon_sensor_alarm",
            "1 if any of the sensor's alarm flags (alarm, min/max/crit_alarm...) is raised.",
            labels=labels,
        )
        for chip in self.chips():
            if chip.name:
                chip_info.add_metric([chip.label, chip.name], {})
            files = sensor_files(chip)
            for sensor in sorted(files, key=sensor_order):
                props = files[sensor]
                kind = sensor_order(sensor)[0]
                values = [chip.label, sensor]
                exported = False
                for suffix, _, sensor_type, names, scale in READINGS:
                    if sensor_type != kind:
                        continue
                    for prop in names:
                        value = read_number(props[prop]) if prop in props else None
                        if value is not None:
                            readings[suffix].add_metric(values, value * scale)
                            exported = True
                            break
                flags = [
                    read_number(path)
                    for prop, path in sorted(props.items())
                    if prop == "alarm" or prop.endswith("_alarm")
                ]
                raised = [flag for flag in flags if flag is not None]
                if raised:
                    alarm.add_metric(values, 1.0 if any(raised) else 0.0)
                    exported = True
                text = read_text(props["label"]) if exported and "label" in props else None
                if text and printable(text):
                    sensor_info.add_metric(values, {"label": printable(text)})
        return [chip_info, sensor_info, *readings.values(), alarm]
