"""Parsers for ipmitool's text output: sdr elist, sensor, dcmi power reading, sel info."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace

from collectors.base import CollectorError

NOMINAL, WARNING, CRITICAL = 0, 1, 2

# Threshold status: `sensor` prints nc/cr/nr, `sdr elist` the lower/upper forms.
THRESHOLD_STATES = {
    "ok": NOMINAL,
    "nc": WARNING,
    "lnc": WARNING,
    "unc": WARNING,
    "cr": CRITICAL,
    "lcr": CRITICAL,
    "ucr": CRITICAL,
    "nr": CRITICAL,
    "lnr": CRITICAL,
    "unr": CRITICAL,
}
NO_READING = {"na", "ns"}

# Unit string as ipmitool prints it -> sensor type.
UNIT_TYPES = {
    "degrees C": "temperature",
    "degrees F": "temperature",
    "RPM": "fan",
    "Volts": "voltage",
    "Amps": "current",
    "Watts": "power",
    "discrete": "discrete",
}

# Asserted discrete states (ipmitool's generic and sensor-specific event strings, lower
# case) that mean trouble; every other state is nominal.
DISCRETE_SEVERITY = {
    **dict.fromkeys(
        (
            "failure detected",
            "power supply ac lost",
            "ac lost or out-of-range",
            "ac lost",
            "redundancy lost",
            "non-redundant: insufficient resources",
            "drive fault",
            "in critical array",
            "in failed array",
            "ierr",
            "thermal trip",
            "frb1/bist failure",
            "frb2/hang in post failure",
            "frb3/processor startup/init failure",
            "sm bios uncorrectable cpu-complex error",
            "uncorrectable machine check exception",
            "uncorrectable ecc",
            "parity",
            "memory scrub failed",
            "critical overtemperature",
            "soft-power control failure",
            "transition to critical from less severe",
            "transition to non-recoverable from less severe",
            "transition to critical from non-recoverable",
            "transition to non-recoverable",
            "bus uncorrectable error",
            "fatal nmi",
            "bus fatal error",
            "undetermined system hardware failure",
            "run-time critical stop",
        ),
        CRITICAL,
    ),
    **dict.fromkeys(
        (
            "predictive failure",
            "predictive failure asserted",
            "ac out-of-range, but present",
            "config error",
            "configuration error",
            "power supply inactive",
            "redundancy degraded",
            "redundancy degraded from fully redundant",
            "redundancy degraded from non-redundant",
            "non-redundant: sufficient from redundant",
            "non-redundant: sufficient from insufficient",
            "rebuild aborted",
            "correctable ecc",
            "correctable ecc logging limit reached",
            "memory device disabled",
            "throttled",
            "correctable machine check error",
            "transition to non-critical from ok",
            "transition to non-critical from more severe",
            "transition to degraded",
            "install error",
            "limit exceeded",
            "performance lags",
            "general chassis intrusion",
            "drive bay intrusion",
            "i/o card area intrusion",
            "processor area intrusion",
            "fan area intrusion",
            "bus correctable error",
            "bus degraded",
            "log almost full",
            "log full",
            "fault status",
        ),
        WARNING,
    ),
}

_ANALOG = re.compile(r"^(-?\d+(?:\.\d+)?)\s+(\S.*)$")


@dataclass(frozen=True)
class Reading:
    """One sensor: name, type, value in base units (if analog) and state (if known)."""

    sensor: str
    type: str
    value: float | None
    state: int | None


@dataclass(frozen=True)
class DcmiReading:
    """``dcmi power reading``: watts now, min/max/average over the sampling period."""

    current: float
    minimum: float
    maximum: float
    average: float
    period_seconds: float | None


@dataclass(frozen=True)
class SelInfo:
    """``sel info`` counters."""

    entries: int
    free_bytes: int
    used_ratio: float | None
    overflow: bool | None


def discrete_severity(states: str) -> int:
    """Worst severity among comma-separated asserted states (unknown states are nominal)."""
    parts = [p.strip().lower() for p in states.split(", ") if p.strip()]
    return max((DISCRETE_SEVERITY.get(p, NOMINAL) for p in parts), default=NOMINAL)


def _typed(unit: str, value: float) -> tuple[str, float]:
    # sdr elist truncates "value unit" to 15 characters, so match units by prefix.
    for name, kind in UNIT_TYPES.items():
        if name.startswith(unit) or unit.startswith(name):
            if name == "degrees F":
                return kind, (value - 32.0) * 5.0 / 9.0
            return kind, value
    return "other", value


def _fields(line: str, count: int, what: str, number: int) -> list[str]:
    fields = [f.strip() for f in line.split("|")]
    if len(fields) != count:
        raise CollectorError(
            f"unexpected {what} output at line {number}: expected {count} "
            f"'|'-separated fields, got {len(fields)}: {line.strip()[:120]!r}"
        )
    return fields


def parse_sdr_elist(text: str) -> list[Reading]:
    """Parse ``ipmitool sdr elist``: ``name | NNh | status | entity | reading``."""
    readings = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, _, status, _, reading = _fields(line, 5, "ipmitool sdr elist", number)
        if status in NO_READING:
            continue
        if status not in THRESHOLD_STATES:
            raise CollectorError(
                f"unexpected ipmitool sdr elist status {status!r} at line {number}"
            )
        first, _, rest = reading.partition(", ")
        match = _ANALOG.match(first)
        if match:
            kind, value = _typed(match.group(2), float(match.group(1)))
            state = THRESHOLD_STATES[status]
            if rest:  # analog sensor that also asserts discrete states
                state = max(state, discrete_severity(rest))
            readings.append(Reading(name, kind, value, state))
        elif status == "ok":
            readings.append(Reading(name, "discrete", None, discrete_severity(reading)))
        else:  # threshold sensor without analog reading
            readings.append(Reading(name, "other", None, THRESHOLD_STATES[status]))
    return unique_names(readings)


def parse_sensor_list(text: str) -> list[Reading]:
    """Parse ``ipmitool sensor``: ``name | value | unit | status | 6 thresholds``."""
    readings = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, value, unit, status = _fields(line, 10, "ipmitool sensor", number)[:4]
        if unit == "discrete" or status in NO_READING or value in NO_READING:
            # Discrete state bits mean nothing without the sensor type; use source=sdr.
            continue
        if status not in THRESHOLD_STATES:
            raise CollectorError(f"unexpected ipmitool sensor status {status!r} at line {number}")
        try:
            number_value = float(value)
        except ValueError:
            if not value.startswith("0x"):
                raise CollectorError(
                    f"unexpected ipmitool sensor value {value!r} at line {number}"
                ) from None
            readings.append(Reading(name, "other", None, THRESHOLD_STATES[status]))
            continue
        kind, converted = _typed(unit, number_value)
        readings.append(Reading(name, kind, converted, THRESHOLD_STATES[status]))
    return unique_names(readings)


def unique_names(readings: list[Reading]) -> list[Reading]:
    """Make repeated sensor names unique (``Temp``, ``Temp (2)``...) in listing order."""
    totals = Counter(r.sensor for r in readings)
    seen: Counter[str] = Counter()
    result = []
    for reading in readings:
        seen[reading.sensor] += 1
        if totals[reading.sensor] > 1 and seen[reading.sensor] > 1:
            reading = replace(reading, sensor=f"{reading.sensor} ({seen[reading.sensor]})")
        result.append(reading)
    return result


def _watts(text: str, label: str) -> float:
    match = re.search(rf"{label}:\s+(\d+) Watts", text)
    if not match:
        raise CollectorError(f"ipmitool dcmi power reading: no {label!r} in output")
    return float(match.group(1))


def parse_dcmi_power(text: str) -> DcmiReading | None:
    """Parse ``dcmi power reading``; ``None`` when the BMC says measurement is deactivated."""
    state = re.search(r"Power reading state is:\s+(\w+)", text)
    if not state:
        raise CollectorError("ipmitool dcmi power reading: no 'Power reading state' in output")
    if state.group(1) != "activated":
        return None
    period = re.search(r"Sampling period:\s+(\d+) Seconds", text)
    return DcmiReading(
        current=_watts(text, "Instantaneous power reading"),
        minimum=_watts(text, "Minimum during sampling period"),
        maximum=_watts(text, "Maximum during sampling period"),
        average=_watts(text, "Average power reading over sample period"),
        period_seconds=float(period.group(1)) if period else None,
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
