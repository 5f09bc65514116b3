"""Parsers for ipmitool's text output: sdr elist, sensor, dcmi power reading, sel info."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from collectors.base import CollectorError, SkipItem
from collectors.ipmi_states import THRESHOLD_STATES, discrete_severity

NO_READING = {"na", "ns"}

# Unit string as ipmitool prints it -> sensor type.
UNIT_TYPES = {
    "degrees C": "temperature",
    "degrees F": "temperature",
    "RPM": "fan",
    "Volts": "voltage",
    "Amps": "current",
    "Watts": "power",
    "percent": "ratio",
    "discrete": "discrete",
}

_ANALOG = re.compile(r"^(-?\d+(?:\.\d+)?)\s+(\S.*)$")


@dataclass(frozen=True)
class Reading:
    """One sensor: name, type, value in base units (if analog), state (if known), SDR ids."""

    sensor: str
    type: str
    value: float | None
    state: int | None
    entity: str = ""  # entity.instance, e.g. "3.1" (sdr elist only)
    number: str = ""  # sensor number, e.g. "0Eh" (sdr elist only)


class LineError(ValueError):
    """One line of ipmitool output that cannot be read."""


@dataclass(frozen=True)
class DcmiReading:
    """``dcmi power reading``: watts now, min/max/average over the sampling period."""

    current: float
    minimum: float
    maximum: float
    average: float
    period_seconds: float | None
    activated: bool = True


@dataclass(frozen=True)
class SelInfo:
    """``sel info`` counters."""

    entries: int
    free_bytes: int
    used_ratio: float | None
    overflow: bool | None


def _typed(unit: str, value: float) -> tuple[str, float]:
    # sdr elist truncates "value unit" to 15 characters, so match units by prefix.
    for name, kind in UNIT_TYPES.items():
        if name.startswith(unit) or unit.startswith(name):
            if name == "degrees F":
                return kind, (value - 32.0) * 5.0 / 9.0
            if kind == "ratio":
                return kind, value / 100.0
            return kind, value
    return "other", value


def _fields(line: str, count: int) -> list[str]:
    fields = [f.strip() for f in line.split("|")]
    if len(fields) != count:
        raise LineError(
            f"expected {count} '|'-separated fields, got {len(fields)}: {line.strip()[:120]!r}"
        )
    return fields


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LineError(f"sensor {name!r}: unexpected value {text[:40]!r}") from None
    if not math.isfinite(value):
        raise LineError(f"sensor {name!r}: value {text[:40]!r} out of range")
    return value


def _status(status: str, name: str) -> int:
    if status not in THRESHOLD_STATES:
        raise LineError(f"sensor {name!r}: unexpected status {status[:40]!r}")
    return THRESHOLD_STATES[status]


def _sdr_line(line: str) -> Reading | None:
    name, number, status, entity, reading = _fields(line, 5)
    if status in NO_READING:
        return None
    threshold = _status(status, name)
    first, _, rest = reading.partition(", ")
    match = _ANALOG.match(first)
    if match:
        kind, value = _typed(match.group(2), _number(match.group(1), name))
        # An analog sensor may also assert discrete states.
        state = max(threshold, discrete_severity(rest)) if rest else threshold
        return Reading(name, kind, value, state, entity, number)
    if status == "ok":
        return Reading(name, "discrete", None, discrete_severity(reading), entity, number)
    return Reading(name, "other", None, threshold, entity, number)  # no analog reading


def _sensor_line(line: str) -> Reading | None:
    name, value, unit, status = _fields(line, 10)[:4]
    if unit == "discrete" or status in NO_READING or value in NO_READING:
        # Discrete state bits mean nothing without the sensor type; use source=sdr.
        return None
    threshold = _status(status, name)
    if value.startswith("0x"):
        return Reading(name, "other", None, threshold)
    kind, converted = _typed(unit, _number(value, name))
    return Reading(name, kind, converted, threshold)


def _parse_lines(
    text: str, what: str, parse_line: Callable[[str], Reading | None], skip: SkipItem
) -> list[Reading]:
    """Readings of every line; an unreadable line is skipped, all of them unreadable fails."""
    readings: list[Reading] = []
    read, unreadable = 0, ""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            reading = parse_line(line)
        except LineError as exc:
            unreadable = unreadable or f"unexpected {what} output at line {number}: {exc}"
            skip(f"{what} line {number}", str(exc))
            continue
        read += 1
        if reading is not None:
            readings.append(reading)
    if unreadable and not read:
        raise CollectorError(unreadable)
    return unique_names(readings)


def parse_sdr_elist(text: str, skip: SkipItem) -> list[Reading]:
    """Parse ``ipmitool sdr elist``: ``name | NNh | status | entity | reading``."""
    return _parse_lines(text, "ipmitool sdr elist", _sdr_line, skip)


def parse_sensor_list(text: str, skip: SkipItem) -> list[Reading]:
    """Parse ``ipmitool sensor``: ``name | value | unit | status | 6 thresholds``."""
    return _parse_lines(text, "ipmitool sensor", _sensor_line, skip)


def unique_names(readings: list[Reading]) -> list[Reading]:
    """Give every sensor a name of its own, whatever names the BMC repeats.

    Names listed once stay. A repeated name gets its entity id (``Temp (3.1)``), else its
    sensor number (``Temp (0Eh)``), whichever tells the group apart, else a count in listing
    order (``Temp``, ``Temp (2)``); a name that is already taken gets the next free count.
    """
    groups: dict[str, list[int]] = {}
    for index, reading in enumerate(readings):
        groups.setdefault(reading.sensor, []).append(index)
    taken = set(groups)
    names = [reading.sensor for reading in readings]
    for name, indexes in groups.items():
        if len(indexes) < 2:
            continue
        qualifiers = _qualifiers([readings[i] for i in indexes])
        for index, qualifier in zip(indexes, qualifiers, strict=True):
            if qualifier is None:
                continue
            candidate, count = f"{name} ({qualifier})", 2
            while candidate in taken:
                candidate, count = f"{name} ({count})", count + 1
            taken.add(candidate)
            names[index] = candidate
    return [replace(r, sensor=n) for r, n in zip(readings, names, strict=True)]


def _qualifiers(group: list[Reading]) -> list[str | None]:
    """Per reading of a same-named group: entity, else sensor number, else listing order."""
    for qualifiers in ([r.entity for r in group], [r.number for r in group]):
        if all(qualifiers) and len(set(qualifiers)) == len(qualifiers):
            return list(qualifiers)
    return [None, *(str(n) for n in range(2, len(group) + 1))]


def _watts(text: str, label: str) -> float:
    match = re.search(rf"{label}:\s+(\d+) Watts", text)
    if not match:
        raise CollectorError(f"ipmitool dcmi power reading: no {label!r} in output")
    return float(match.group(1))


def parse_dcmi_power(text: str) -> DcmiReading:
    """Parse ``dcmi power reading``, readings and the activation state as the BMC reports them.

    OpenBMC reports real readings with the state ``deactivated``; an all-zero deactivated
    reading means nothing is measured (the caller leaves the watts out).
    """
    state = re.search(r"Power reading state is:\s+(\w+)", text)
    if not state:
        raise CollectorError("ipmitool dcmi power reading: no 'Power reading state' in output")
    period = re.search(r"Sampling period:\s+(\d+) Seconds", text)
    return DcmiReading(
        current=_watts(text, "Instantaneous power reading"),
        minimum=_watts(text, "Minimum during sampling period"),
        maximum=_watts(text, "Maximum during sampling period"),
        average=_watts(text, "Average power reading over sample period"),
        period_seconds=float(period.group(1)) if period else None,
        activated=state.group(1) == "activated",
    )


def parse_sel_info(text: str) -> SelInfo:
    """Parse ``sel info`` (``Free Space: 65535 bytes or more`` is reported as 65535)."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    entries = re.fullmatch(r"(\d+)", fields.get("Entries", ""))
    free = re.match(r"(\d+) bytes", fields.get("Free Space", ""))
    if not entries or not free:
        raise CollectorError("ipmitool sel info: no 'Entries' or 'Free Space' in output")
    used = re.fullmatch(r"(\d+)%", fields.get("Percent Used", ""))
    overflow = fields.get("Overflow")
    return SelInfo(
        entries=int(entries.group(1)),
        free_bytes=int(free.group(1)),
        used_ratio=int(used.group(1)) / 100 if used else None,
        overflow={"true": True, "false": False}.get(overflow or ""),
    )
