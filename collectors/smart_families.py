"""Metric families from smartctl results (parsed by collectors/smart_parse.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import SkipItem
from collectors.nvme_health import FIELDS, HealthLog, controller, health_families
from collectors.smart_devices import wwn
from collectors.smart_links import current_speed, max_speed
from collectors.smart_parse import DeviceResult, Unreadable, finite, number, section, text
from collectors.smart_selftest import selftest_families


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
    # smartctl >= 7.5 with --capabilities: NVMe composite thresholds (Identify WCTEMP, CCTEMP).
    ("hw_smart_temperature_warning_celsius", "temperature.op_limit_max", 1, "NVMe warning limit."),
    (
        "hw_smart_temperature_critical_celsius",
        "temperature.critical_limit_max",
        1,
        "NVMe critical temperature limit.",
    ),
    ("hw_smart_interface_speed_bytes", current_speed, 1, "Link speed (SATA, SAS), bytes/s."),
    ("hw_smart_interface_speed_max_bytes", max_speed, 1, "Fastest SATA link speed, bytes/s."),
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


def _at(path: str, scale: float = 1) -> Extractor:
    """The number at a dotted JSON ``path``, scaled."""
    keys = path.split(".")
    return lambda data: None if (v := number(data, *keys)) is None else v * scale


def _scalar(spec: Spec) -> tuple[str, GaugeMetricFamily | CounterMetricFamily, Extractor]:
    name, source, scale, doc = spec
    family = _counter(name, doc) if name.endswith("_total") else _gauge(name, doc)
    return name, family, _at(source, scale) if isinstance(source, str) else source


def _read(extract: Extractor, data: Any, item: str, skip: SkipItem) -> float | None:
    """``extract(data)``; a number no float can hold is skipped as unreadable (``None``)."""
    try:
        value = extract(data)
        return None if value is None else finite(value)
    except Unreadable as exc:
        skip(item, str(exc))
        return None


def _info_labels(doc: dict[str, Any], by_id: str) -> dict[str, str]:
    dev = section(doc, "device")
    return {
        "wwn": wwn(doc),
        "by_id": by_id,
        "model_family": text(doc, "model_family"),
        "model": text(doc, "model_name", "scsi_model_name"),
        "serial": text(doc, "serial_number"),
        "firmware": text(doc, "firmware_version", "scsi_revision", "revision"),
        "interface": text(dev, "type"),
        "protocol": text(dev, "protocol"),
    }


def build_families(
    results: Sequence[DeviceResult],
    nvme_health: bool,
    skip: SkipItem,
    by_id: Mapping[str, str] | None = None,
    paths: Mapping[str, int] | None = None,
) -> list[Metric]:
    """Metric families for every device; unreadable and sleeping ones get status metrics only.

    A value no float can hold is left out and reported to ``skip``; the rest is kept.
    ``by_id`` names a device's /dev/disk/by-id link, ``paths`` how many paths reached it.
    """
    by_id, paths = by_id or {}, paths or {}
    path_count = _gauge("hw_smart_device_paths", "Paths (device nodes) that reached this disk.")
    readable = _gauge("hw_smart_device_readable", "1 if smartctl read the device (or it sleeps).")
    standby = _gauge("hw_smart_device_standby", "1 if the disk was asleep and was not woken.")
    exit_status = _gauge("hw_smart_exit_status", "smartctl exit status bit mask, see smartctl(8).")
    info = InfoMetricFamily(
        "hw_smart_device",
        "Disk identity as reported by smartctl.",
        labels=[
            "device",
            "wwn",
            "by_id",
            "model_family",
            "model",
            "serial",
            "firmware",
            "interface",
            "protocol",
        ],
    )
    scalars = [_scalar(spec) for spec in SCALARS]
    health: list[HealthLog] = []
    attr_labels = ("device", "attribute_id", "attribute_name")
    attributes = [
        (key, _gauge(f"hw_smart_attribute_{key}", f"ATA SMART attribute {doc}.", attr_labels))
        for key, _, doc in ATTRIBUTES
    ]
    attribute_values = [_at(path) for _, path, _ in ATTRIBUTES]
    scsi = [
        (name, _counter(name, f"SCSI error counter log: {doc}", ("device", "operation")))
        for name, _, _, doc in SCSI_COUNTERS
    ]
    scsi_values = [_at(key, scale) for _, key, scale, _ in SCSI_COUNTERS]
    for result in results:
        device = result.device
        readable.add_metric([device], float(result.readable))
        standby.add_metric([device], float(result.standby))
        if result.exit_status is not None:
            exit_status.add_metric([device], float(result.exit_status))
        doc = result.doc
        if doc is None:
            continue
        path_count.add_metric([device], float(paths.get(device, 1)))
        info.add_metric([device], _info_labels(doc, by_id.get(device, "")))
        for name, family, extract in scalars:
            if (value := _read(extract, doc, f"{device} {name}", skip)) is not None:
                family.add_metric([device], value)
        if nvme_health and NV in doc:
            health.append(nvme_health_log(device, section(doc, NV), skip))
        table = section(doc, "ata_smart_attributes").get("table")
        seen: set[tuple[str, ...]] = set()
        for attr in table if isinstance(table, list) else []:
            if not isinstance(attr, dict) or "id" not in attr:
                continue
            labels = [device, str(attr["id"]), str(attr.get("name", ""))]
            where = f"{device} attribute {labels[1]} {labels[2]}"
            if tuple(labels) in seen:
                skip(where, "listed twice (the first one is kept)")
                continue
            seen.add(tuple(labels))
            for (key, gauge), extract in zip(attributes, attribute_values, strict=True):
                if (value := _read(extract, attr, f"{where} {key}", skip)) is not None:
                    gauge.add_metric(labels, value)
        for operation in ("read", "write", "verify"):
            counters = section(doc, "scsi_error_counter_log").get(operation)
            for (name, counter), extract in zip(scsi, scsi_values, strict=True):
                value = _read(extract, counters, f"{device} {name} {operation}", skip)
                if value is not None:
                    counter.add_metric([device, operation], value)
    return [
        readable,
        standby,
        exit_status,
        info,
        path_count,
        *(family for _, family, _ in scalars),
        *(gauge for _, gauge in attributes),
        *(counter for _, counter in scsi),
        *selftest_families(results, skip),
        *(health_families(health) if nvme_health else ()),
    ]


def nvme_health_log(device: str, log: dict[str, Any], skip: SkipItem) -> HealthLog:
    """smartctl's NVMe health log as the nvme collector exports it (``hw_nvme_*``)."""
    health = HealthLog(controller(device))
    where = f"{device} nvme health"
    health.temperature = _read(_at("temperature"), log, f"{where} temperature", skip)
    sensors = log.get("temperature_sensors")
    for index, reading in enumerate(sensors if isinstance(sensors, list) else [], 1):
        value = _read(lambda v: v if isinstance(v, int | float) else None, reading, where, skip)
        if value is not None:
            health.sensors[str(index)] = value
    for field in FIELDS:
        value = _read(_at(field.smartctl, field.scale), log, f"{where} {field.smartctl}", skip)
        if value is not None:
            health.values[field.metric] = value
    return health
