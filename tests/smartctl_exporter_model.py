"""What smartctl_exporter would export for a smartctl JSON document: the oracle of compat/.

A transcription of the series compat/smartctl_exporter.rules.yml rebuilds, from
prometheus-community/smartctl_exporter's ``smartctl.go`` (commit c0fe431c, Apache-2.0): the
device label from the document's ``device.name`` and ``device.type`` (``buildDeviceLabel``),
values read the way gjson reads them (a missing number is 0, ``true`` is 1). It reads the
smartctl JSON itself, never our exporter's output, so the recording rules are checked
against an independent reading of the same captures. Labels the rules cannot rebuild
(attribute flags; ``ata_version``, ``sata_version``, ``form_factor``, ``scsi_vendor``,
``scsi_product``, ``scsi_version``, ``ata_additional_product_id``) are left out here and
listed in docs/migrating.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

Labels = dict[str, str]
Series = tuple[str, Labels, float]

DEVICE_PREFIX = re.compile(r"^/dev/(?:disk/by-id/|disk/by-path/|)")
# Every smartctl_exporter metric name (metrics.go), for checking what the rules record.
METRIC_NAMES = frozenset(
    {
        "smartctl_version", "smartctl_device", "smartctl_devices",
        "smartctl_device_capacity_blocks", "smartctl_device_capacity_bytes",
        "smartctl_device_nvme_capacity_bytes", "smartctl_device_block_size",
        "smartctl_device_interface_speed", "smartctl_device_attribute",
        "smartctl_device_power_on_seconds", "smartctl_device_rotation_rate",
        "smartctl_device_temperature", "smartctl_device_power_cycle_count",
        "smartctl_device_percentage_used", "smartctl_device_available_spare",
        "smartctl_device_available_spare_threshold", "smartctl_device_critical_warning",
        "smartctl_device_media_errors", "smartctl_device_num_err_log_entries",
        "smartctl_device_bytes_read", "smartctl_device_bytes_written",
        "smartctl_device_smart_status", "smartctl_device_smartctl_exit_status",
        "smartctl_device_state", "smartctl_device_statistics", "smartctl_device_error_log_count",
        "smartctl_device_self_test_log_count", "smartctl_device_self_test_log_error_count",
        "smartctl_device_erc_seconds", "smartctl_scsi_grown_defect_list",
        "smartctl_read_errors_corrected_by_rereads_rewrites",
        "smartctl_read_errors_corrected_by_eccfast", "smartctl_read_errors_corrected_by_eccdelayed",
        "smartctl_read_total_uncorrected_errors",
        "smartctl_write_errors_corrected_by_rereads_rewrites",
        "smartctl_write_errors_corrected_by_eccfast",
        "smartctl_write_errors_corrected_by_eccdelayed",
        "smartctl_write_total_uncorrected_errors",
    }
)  # fmt: skip
NVME_LOG = "nvme_smart_health_information_log"
SCSI_CYCLES = "scsi_start_stop_cycle_counter.accumulated_start_stop_cycles"
# (metric, key in the NVMe health log); smartctl_exporter emits these for type "nvme" only.
NVME_FIELDS = (
    ("smartctl_device_percentage_used", "percentage_used"),
    ("smartctl_device_available_spare", "available_spare"),
    ("smartctl_device_available_spare_threshold", "available_spare_threshold"),
    ("smartctl_device_critical_warning", "critical_warning"),
    ("smartctl_device_media_errors", "media_errors"),
    ("smartctl_device_num_err_log_entries", "num_err_log_entries"),
)


def device_label(name: str, dev_type: str) -> str:
    """``buildDeviceLabel``: /dev/bus/0 + megaraid,3 -> bus_0_megaraid_3."""
    label = DEVICE_PREFIX.sub("", name).replace("/", "_")
    return f"{label}_{dev_type.replace(',', '_')}" if "," in dev_type else label


def get(doc: Any, path: str) -> Any:
    """The value at a dotted path, or None."""
    for key in path.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def num(doc: Any, path: str) -> float:
    """gjson's ``Float()``: a missing value is 0, booleans are 0/1, numeric strings parse."""
    value = get(doc, path)
    if isinstance(value, int | float):  # bool is an int
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return 0.0
    return 0.0


def text(doc: Any, path: str) -> str:
    """gjson's ``String()`` of a string value ("" when missing)."""
    value = get(doc, path)
    return value.strip() if isinstance(value, str) else ""


def info_labels(doc: dict[str, Any]) -> Labels:
    """The rebuildable labels of ``smartctl_device`` (``NewSMARTctl`` and ``mineDevice``)."""
    model = text(doc, "model_name") if "model_name" in doc else text(doc, "scsi_model_name")
    return {
        "interface": text(doc, "device.type"),
        "protocol": text(doc, "device.protocol"),
        "model_family": text(doc, "model_family") if "model_family" in doc else "unknown",
        "model_name": model or "unknown",
        "serial_number": text(doc, "serial_number"),
        "firmware_version": text(doc, "firmware_version"),
        "scsi_revision": text(doc, "scsi_revision"),
    }


def _device_series(doc: dict[str, Any], scsi_by_protocol: bool) -> Iterator[Series]:
    """The per-device series of ``SMARTctl.Collect`` that compat/ rebuilds."""
    yield "smartctl_device_smartctl_exit_status", {}, num(doc, "smartctl.exit_status")
    yield "smartctl_device", info_labels(doc), 1.0
    for attribute in get(doc, "ata_smart_attributes.table") or []:
        names = {"value": "value", "worst": "worst", "thresh": "thresh", "raw": "raw.value"}
        for value_type, path in names.items():
            labels = {
                "attribute_name": text(attribute, "name"),
                "attribute_id": str(int(num(attribute, "id"))),
                "attribute_value_type": value_type,
            }
            yield "smartctl_device_attribute", labels, num(attribute, path)
    for speed_type in ("max", "current"):
        if (speed := get(doc, f"interface_speed.{speed_type}")) is not None:
            bits = num(speed, "units_per_second") * num(speed, "bits_per_unit")
            yield "smartctl_device_interface_speed", {"speed_type": speed_type}, bits
    if get(doc, "power_on_time") is not None:
        seconds = num(doc, "power_on_time.hours") * 3600 + num(doc, "power_on_time.minutes") * 60
        yield "smartctl_device_power_on_seconds", {}, seconds
    if num(doc, "rotation_rate") > 0:
        yield "smartctl_device_rotation_rate", {}, num(doc, "rotation_rate")
    for key, value in (get(doc, "temperature") or {}).items():
        yield "smartctl_device_temperature", {"temperature_type": key}, num({"v": value}, "v")
    for cycles in ("power_cycle_count", SCSI_CYCLES):  # the first one present
        if get(doc, cycles) is not None:
            yield "smartctl_device_power_cycle_count", {}, num(doc, cycles)
            break
    for log_type, status in (get(doc, "ata_smart_error_log") or {}).items():
        yield "smartctl_device_error_log_count", {"error_log_type": log_type}, num(status, "count")
    for log_type, status in (get(doc, "ata_smart_self_test_log") or {}).items():
        labels = {"self_test_log_type": log_type}
        yield "smartctl_device_self_test_log_count", labels, num(status, "count")
        yield "smartctl_device_self_test_log_error_count", labels, num(status, "error_count_total")
    if get(doc, "smart_status") is not None:
        yield "smartctl_device_smart_status", {}, num(doc, "smart_status.passed")
    if text(doc, "device.type") == "nvme":
        yield from _nvme_series(doc)
    if scsi_by_protocol:
        scsi_logs = text(doc, "device.protocol") == "SCSI"
    else:
        scsi_logs = text(doc, "device.type") == "scsi"
    if scsi_logs:
        yield from _scsi_series(doc)


def _nvme_series(doc: dict[str, Any]) -> Iterator[Series]:
    """``mineNvme*``: the health log fields; bytes only when the drive reports them."""
    for metric, key in NVME_FIELDS:
        yield metric, {}, num(doc, f"{NVME_LOG}.{key}")
    for direction in ("read", "written"):
        units = num(doc, f"{NVME_LOG}.data_units_{direction}")
        if units:
            yield f"smartctl_device_bytes_{direction}", {}, units * 1000.0 * 512.0


def _scsi_series(doc: dict[str, Any]) -> Iterator[Series]:
    """``mineSCSI*``: grown defects, uncorrected errors, bytes processed."""
    if get(doc, "scsi_grown_defect_list") is not None:
        yield "smartctl_scsi_grown_defect_list", {}, num(doc, "scsi_grown_defect_list")
    log = get(doc, "scsi_error_counter_log")
    if log is None:
        return
    for op in ("read", "write"):
        uncorrected = num(log, f"{op}.total_uncorrected_errors")
        yield f"smartctl_{op}_total_uncorrected_errors", {}, uncorrected
    yield "smartctl_device_bytes_read", {}, num(log, "read.gigabytes_processed") * 1e9
    yield "smartctl_device_bytes_written", {}, num(log, "write.gigabytes_processed") * 1e9


def exported(
    docs: list[tuple[str, dict[str, Any]]], scsi_by_protocol: bool = False
) -> list[Series]:
    """Every series for ``(device name, smartctl JSON)`` pairs, plus ``smartctl_devices``.

    smartctl writes the name it was given into ``device.name``; the captures carry the name
    of the machine they were taken on, so the name the exporter asked for is passed in.
    smartctl_exporter reads the SCSI logs only of type ``scsi`` disks; ``scsi_by_protocol``
    reads them for every SCSI-protocol disk (SAS disks behind a RAID controller), as we do.
    """
    series: list[Series] = []
    for name, doc in docs:
        dev = device_label(name, text(doc, "device.type"))
        for metric, labels, value in _device_series(doc, scsi_by_protocol):
            series.append((metric, {"device": dev, **labels}, value))
    series.append(("smartctl_devices", {}, float(len(docs))))
    return series
