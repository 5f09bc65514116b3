"""smartctl JSON to per-device results and metric families (used by collectors/smart.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

# smartctl(8) EXIT STATUS: bit 0 command line did not parse, bit 1 device open failed.
UNREADABLE_BITS = 0x03
OPEN_FAILED_BIT = 0x02
DATA_UNIT = 1000 * 512  # NVMe data units

PRIVILEGE_HINT = (
    "smartctl needs root, or CAP_SYS_RAWIO (ATA/SCSI) and CAP_SYS_ADMIN (NVMe) "
    "plus read access to the device node (usually the disk group)"
)
_STANDBY = re.compile(r"device is in (.+?) mode", re.IGNORECASE)
_DENIED = ("permission denied", "operation not permitted")
# Any of these means smartctl actually got data from the device.
_DATA_KEYS = (
    "smart_status",
    "ata_smart_attributes",
    "nvme_smart_health_information_log",
    "scsi_error_counter_log",
    "temperature",
    "power_on_time",
    "model_name",
    "scsi_model_name",
)


@dataclass(frozen=True)
class Device:
    """One disk to query: smartctl device name, optional ``--device`` type, metric label."""

    name: str
    type: str
    label: str


@dataclass(frozen=True)
class DeviceResult:
    """The outcome of one per-device smartctl run."""

    device: str
    readable: bool
    standby: bool = False
    exit_status: int | None = None
    doc: dict[str, Any] | None = None
    error: str | None = None
    tool_missing: bool = False


def device_label(name: str, dev_type: str = "") -> str:
    """Metric label for a device: name without /dev/, plus the RAID slot for pass-through types."""
    label = name.removeprefix("/dev/")
    if "," in dev_type:  # e.g. megaraid,3: many disks behind one device node
        label = f"{label}_{dev_type.replace(',', '_')}"
    return label


def parse_scan(stdout: bytes) -> list[Device]:
    """Devices from ``smartctl --scan-open --json``; raises ValueError on unusable output."""
    doc = _load(stdout)
    if doc is None or "smartctl" not in doc:
        raise ValueError(f"output is not smartctl JSON: {_excerpt(stdout)}")
    devices, seen = [], set()
    for entry in doc.get("devices") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        dev_type = entry["type"] if isinstance(entry.get("type"), str) else ""
        label = device_label(entry["name"], dev_type)
        if label not in seen:
            seen.add(label)
            devices.append(Device(entry["name"], dev_type, label))
    return devices


def classify(label: str, returncode: int, stdout: bytes, stderr: bytes) -> DeviceResult:
    """Decide what one smartctl run means: data, standby, or a device that could not be read."""
    doc = _load(stdout)
    if doc is None or not isinstance(doc.get("smartctl"), dict):
        if returncode & UNREADABLE_BITS:
            reason = _reason(None, stderr or stdout, returncode)
        elif stdout.lstrip().startswith(b"{"):
            reason = f"smartctl printed truncated or invalid JSON: {_excerpt(stdout)}"
        else:
            reason = f"smartctl printed output that is not JSON: {_excerpt(stdout or stderr)}"
        return DeviceResult(label, False, exit_status=returncode, error=reason)
    status = _int(doc["smartctl"].get("exit_status"), returncode)
    messages = _messages(doc)
    if status & OPEN_FAILED_BIT and (
        "power_mode" in doc or any(_STANDBY.search(m) for m in messages)
    ):
        return DeviceResult(label, True, standby=True, exit_status=status)
    if status & UNREADABLE_BITS and not any(key in doc for key in _DATA_KEYS):
        return DeviceResult(label, False, exit_status=status, error=_reason(doc, stderr, status))
    return DeviceResult(label, True, exit_status=status, doc=doc)


def _reason(doc: dict[str, Any] | None, stderr: bytes, status: int) -> str:
    text = "; ".join(_messages(doc)) if doc else ""
    text = text or stderr.decode(errors="replace").strip() or f"smartctl exited {status}"
    if any(word in text.lower() for word in _DENIED):
        return f"permission denied; {PRIVILEGE_HINT}"
    return text


def _load(stdout: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(stdout)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def _messages(doc: dict[str, Any]) -> list[str]:
    found = _dict(doc, "smartctl").get("messages")
    if not isinstance(found, list):
        return []
    return [m["string"] for m in found if isinstance(m, dict) and isinstance(m.get("string"), str)]


def _dict(doc: Any, key: str) -> dict[str, Any]:
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, dict) else {}


def _excerpt(data: bytes) -> str:
    text = data.decode(errors="replace").strip().replace("\n", " ")
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def number(doc: Any, *path: str) -> float | None:
    """A numeric field at ``path`` (numbers or numeric strings); ``None`` when absent."""
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    if isinstance(doc, bool):
        return float(doc)
    if isinstance(doc, int | float):
        return float(doc)
    if isinstance(doc, str):
        try:
            return float(doc)
        except ValueError:
            return None
    return None


def text(doc: dict[str, Any], *keys: str) -> str:
    """The first non-empty string among ``keys``."""
    for key in keys:
        value = doc.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def power_on_seconds(doc: dict[str, Any]) -> float | None:
    """Power-on time in seconds from ``power_on_time.{hours,minutes}``."""
    hours = number(doc, "power_on_time", "hours")
    if hours is None:
        return None
    return hours * 3600 + (number(doc, "power_on_time", "minutes") or 0) * 60


def power_cycles(doc: dict[str, Any]) -> float | None:
    """ATA/NVMe power cycle count, or SCSI accumulated start-stop cycles."""
    value = number(doc, "power_cycle_count")
    if value is None:
        value = number(doc, "scsi_start_stop_cycle_counter", "accumulated_start_stop_cycles")
    return value


def capacity_bytes(doc: dict[str, Any]) -> float | None:
    """User capacity (ATA/SCSI/NVMe namespace) or total NVM capacity."""
    value = number(doc, "user_capacity", "bytes")
    return value if value is not None else number(doc, "nvme_total_capacity")


def _gauge(name: str, doc: str, labels: Sequence[str] = ("device",)) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _counter(name: str, doc: str, labels: Sequence[str] = ("device",)) -> CounterMetricFamily:
    return CounterMetricFamily(name.removesuffix("_total"), doc, labels=list(labels))


Extractor = Callable[[dict[str, Any]], float | None]
Spec = tuple[str, str | Extractor, float, str]
NV = "nvme_smart_health_information_log"
ST = "ata_smart_self_test_log.standard"
EL = "ata_smart_error_log.summary"
# (name, dotted JSON path or extractor, scale, help); a name ending in _total is a counter.
SCALARS: tuple[Spec, ...] = (
    ("hw_smart_status_passed", "smart_status.passed", 1, "1 if the SMART health check passed."),
    ("hw_smart_temperature_celsius", "temperature.current", 1, "Current drive temperature."),
    ("hw_smart_temperature_trip_celsius", "temperature.drive_trip", 1, "SCSI trip temperature."),
    ("hw_smart_power_on_seconds", power_on_seconds, 1, "Power-on time (hour resolution)."),
    ("hw_smart_power_cycles_total", power_cycles, 1, "Power cycles (SCSI: start-stop cycles)."),
    ("hw_smart_capacity_bytes", capacity_bytes, 1, "User capacity."),
    ("hw_smart_rotation_rate_rpm", "rotation_rate", 1, "Rotation rate; 0 for solid state."),
    ("hw_smart_error_log_errors_total", f"{EL}.count", 1, "Errors in the ATA error log."),
    ("hw_smart_self_test_log_entries", f"{ST}.count", 1, "Entries in the ATA self-test log."),
    ("hw_smart_self_test_log_errors", f"{ST}.error_count_total", 1, "Failed ATA self-tests."),
    ("hw_smart_scsi_grown_defects", "scsi_grown_defect_list", 1, "SCSI grown defect list size."),
    (
        "hw_smart_scsi_load_unload_cycles_total",
        "scsi_start_stop_cycle_counter.accumulated_load_unload_cycles",
        1,
        "SCSI accumulated load-unload cycles.",
    ),
)
# hw_smart_nvme_<name>, only when the nvme collector does not cover them (docs/collectors/nvme.md).
NVME_SCALARS: tuple[tuple[str, str, float, str], ...] = (
    ("critical_warning", "critical_warning", 1, "critical warning bits."),
    ("available_spare_ratio", "available_spare", 0.01, "available spare (0-1)."),
    ("available_spare_threshold_ratio", "available_spare_threshold", 0.01, "spare threshold."),
    ("percentage_used_ratio", "percentage_used", 0.01, "endurance used (may exceed 1)."),
    ("data_read_bytes_total", "data_units_read", DATA_UNIT, "data read."),
    ("data_written_bytes_total", "data_units_written", DATA_UNIT, "data written."),
    ("media_errors_total", "media_errors", 1, "media and data integrity errors."),
    ("unsafe_shutdowns_total", "unsafe_shutdowns", 1, "unsafe shutdowns."),
    ("error_log_entries_total", "num_err_log_entries", 1, "error information log entries."),
)
ATTRIBUTES = (
    ("value", "value", "normalized value"),
    ("worst", "worst", "worst normalized value"),
    ("threshold", "thresh", "failure threshold"),
    ("raw", "raw.value", "raw value"),
)
SCSI_COUNTERS = (
    ("hw_smart_scsi_errors_corrected_total", "total_errors_corrected", 1, "corrected errors."),
    (
        "hw_smart_scsi_errors_uncorrected_total",
        "total_uncorrected_errors",
        1,
        "uncorrected errors.",
    ),
    ("hw_smart_scsi_processed_bytes_total", "gigabytes_processed", 1e9, "bytes processed."),
)


def _scalar(spec: Spec) -> tuple[GaugeMetricFamily | CounterMetricFamily, Extractor]:
    name, source, scale, doc = spec
    family = _counter(name, doc) if name.endswith("_total") else _gauge(name, doc)
    if not isinstance(source, str):
        return family, source
    path = source.split(".")
    return family, lambda data: None if (v := number(data, *path)) is None else v * scale


def _info_labels(doc: dict[str, Any]) -> dict[str, str]:
    dev = _dict(doc, "device")
    return {
        "model_family": text(doc, "model_family"),
        "model": text(doc, "model_name", "scsi_model_name"),
        "serial": text(doc, "serial_number"),
        "firmware": text(doc, "firmware_version", "scsi_revision"),
        "interface": text(dev, "type"),
        "protocol": text(dev, "protocol"),
    }


def build_families(results: Sequence[DeviceResult], nvme_health: bool) -> list[Metric]:
    """Metric families for every device; unreadable and sleeping ones get status metrics only."""
    readable = _gauge("hw_smart_device_readable", "1 if smartctl read the device (or it sleeps).")
    standby = _gauge("hw_smart_device_standby", "1 if the disk was asleep and was not woken.")
    exit_status = _gauge("hw_smart_exit_status", "smartctl exit status bit mask, see smartctl(8).")
    info = InfoMetricFamily(
        "hw_smart_device",
        "Disk identity as reported by smartctl.",
        labels=["device", "model_family", "model", "serial", "firmware", "interface", "protocol"],
    )
    nvme = [(f"hw_smart_nvme_{n}", f"{NV}.{p}", k, f"NVMe {h}") for n, p, k, h in NVME_SCALARS]
    scalars = [_scalar(spec) for spec in (*SCALARS, *(nvme if nvme_health else ()))]
    attr_labels = ("device", "attribute_id", "attribute_name")
    attributes = [
        (_gauge(f"hw_smart_attribute_{key}", f"ATA SMART attribute {doc}.", attr_labels), path)
        for key, path, doc in ATTRIBUTES
    ]
    scsi = [
        (_counter(name, f"SCSI error counter log: {doc}", ("device", "operation")), key, scale)
        for name, key, scale, doc in SCSI_COUNTERS
    ]
    for result in results:
        device = result.device
        readable.add_metric([device], float(result.readable))
        standby.add_metric([device], float(result.standby))
        if result.exit_status is not None:
            exit_status.add_metric([device], float(result.exit_status))
        doc = result.doc
        if doc is None:
            continue
        info.add_metric([device], _info_labels(doc))
        for family, extract in scalars:
            if (value := extract(doc)) is not None:
                family.add_metric([device], value)
        table = _dict(doc, "ata_smart_attributes").get("table")
        for attr in table if isinstance(table, list) else []:
            if isinstance(attr, dict) and "id" in attr:
                labels = [device, str(attr["id"]), str(attr.get("name", ""))]
                for gauge, path in attributes:
                    if (value := number(attr, *path.split("."))) is not None:
                        gauge.add_metric(labels, value)
        for operation in ("read", "write", "verify"):
            counters = _dict(doc, "scsi_error_counter_log").get(operation)
            for counter, key, scale in scsi:
                if (value := number(counters, key)) is not None:
                    counter.add_metric([device, operation], value * scale)
    return [
        readable,
        standby,
        exit_status,
        info,
        *(family for family, _ in scalars),
        *(gauge for gauge, _ in attributes),
        *(counter for counter, _, _ in scsi),
    ]
