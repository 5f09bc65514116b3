"""The NVMe health log as ``hw_nvme_*``: one set of names and labels, whichever tool read it.

The nvme collector reads the log with nvme-cli; the smart collector reads the same log with
smartctl where nvme-cli is not installed. Both fill ``HealthLog`` records (values already in
base units) and build their families here, so a user's names never depend on the tool.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

DATA_UNIT_BYTES = 1000 * 512
_CONTROLLER = re.compile(r"(?:/dev/)?(nvme\d+)(?:[cn]\d+)*")


@dataclass(frozen=True)
class HealthField:
    """One field of the log: its metric, its key in each tool's JSON, the scale to base units."""

    metric: str  # a name ending in _total is a counter
    nvme_cli: str  # key in ``nvme smart-log -o json``
    smartctl: str  # key in smartctl's ``nvme_smart_health_information_log``
    scale: float
    help: str


FIELDS = (
    HealthField(
        "hw_nvme_critical_warning",
        "critical_warning",
        "critical_warning",
        1,
        "Critical warning bit field.",
    ),
    HealthField(
        "hw_nvme_available_spare_ratio",
        "avail_spare",
        "available_spare",
        0.01,
        "Available spare (0-1).",
    ),
    HealthField(
        "hw_nvme_available_spare_threshold_ratio",
        "spare_thresh",
        "available_spare_threshold",
        0.01,
        "Available spare threshold (0-1).",
    ),
    HealthField(
        "hw_nvme_percentage_used_ratio",
        "percent_used",
        "percentage_used",
        0.01,
        "Vendor estimate of endurance used (may exceed 1).",
    ),
    HealthField(
        "hw_nvme_data_read_bytes_total",
        "data_units_read",
        "data_units_read",
        DATA_UNIT_BYTES,
        "Data read.",
    ),
    HealthField(
        "hw_nvme_data_written_bytes_total",
        "data_units_written",
        "data_units_written",
        DATA_UNIT_BYTES,
        "Data written.",
    ),
    HealthField(
        "hw_nvme_host_read_commands_total",
        "host_read_commands",
        "host_reads",
        1,
        "Read commands completed.",
    ),
    HealthField(
        "hw_nvme_host_write_commands_total",
        "host_write_commands",
        "host_writes",
        1,
        "Write commands completed.",
    ),
    HealthField(
        "hw_nvme_controller_busy_seconds_total",
        "controller_busy_time",
        "controller_busy_time",
        60,
        "Time the controller was busy with I/O.",
    ),
    HealthField("hw_nvme_power_cycles_total", "power_cycles", "power_cycles", 1, "Power cycles."),
    HealthField(
        "hw_nvme_power_on_seconds",
        "power_on_hours",
        "power_on_hours",
        3600,
        "Power-on time (drive lifetime, hour resolution).",
    ),
    HealthField(
        "hw_nvme_unsafe_shutdowns_total",
        "unsafe_shutdowns",
        "unsafe_shutdowns",
        1,
        "Unsafe shutdowns.",
    ),
    HealthField(
        "hw_nvme_media_errors_total",
        "media_errors",
        "media_errors",
        1,
        "Media and data integrity errors.",
    ),
    HealthField(
        "hw_nvme_error_log_entries_total",
        "num_err_log_entries",
        "num_err_log_entries",
        1,
        "Error log entries.",
    ),
    HealthField(
        "hw_nvme_warning_temperature_seconds_total",
        "warning_temp_time",
        "warning_temp_time",
        60,
        "Time above the warning composite temperature threshold.",
    ),
    HealthField(
        "hw_nvme_critical_temperature_seconds_total",
        "critical_comp_time",
        "critical_comp_time",
        60,
        "Time above the critical composite temperature threshold.",
    ),
)


@dataclass
class HealthLog:
    """One controller's health log in base units (Celsius, bytes, seconds, ratios)."""

    device: str  # the controller, ``nvme0``
    temperature: float | None = None
    sensors: dict[str, float] = field(default_factory=dict)  # sensor number -> Celsius
    values: dict[str, float] = field(default_factory=dict)  # metric name -> value


def controller(device: str) -> str:
    """The controller of a device name (``/dev/nvme0n1`` -> ``nvme0``); other names unchanged."""
    match = _CONTROLLER.fullmatch(device)
    return match.group(1) if match else device


def health_families(logs: Iterable[HealthLog]) -> list[Metric]:
    """``hw_nvme_temperature_*`` and one family per field; a controller listed twice counts once."""
    dev = ["device"]
    temperature = GaugeMetricFamily(
        "hw_nvme_temperature_celsius", "Composite temperature.", labels=dev
    )
    sensors = GaugeMetricFamily(
        "hw_nvme_temperature_sensor_celsius",
        "Temperature sensor reading.",
        labels=["device", "sensor"],
    )
    families = {
        f.metric: (CounterMetricFamily if f.metric.endswith("_total") else GaugeMetricFamily)(
            f.metric.removesuffix("_total"), f.help, labels=dev
        )
        for f in FIELDS
    }
    seen: set[str] = set()
    for log in logs:
        if log.device in seen:
            continue
        seen.add(log.device)
        if log.temperature is not None:
            temperature.add_metric([log.device], log.temperature)
        for sensor, reading in sorted(log.sensors.items(), key=lambda s: int(s[0])):
            sensors.add_metric([log.device, sensor], reading)
        for name, number in log.values.items():
            families[name].add_metric([log.device], number)
    return [temperature, sensors, *families.values()]
