"""The hw_redfish_* families of one poll and the helpers that read Redfish values into them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

HEALTH = {"OK": 0.0, "Warning": 1.0, "Critical": 2.0}
HEALTH_HELP = " 0 = OK, 1 = Warning, 2 = Critical (Redfish Status.Health)."
SENSOR = ["chassis", "sensor"]
GAUGES = {
    "system_health": (["system"], "Health of the computer system." + HEALTH_HELP),
    "system_power_on": (["system"], "1 if the system's PowerState is On, else 0."),
    "memory_health": (["system", "module"], "Health of a memory module." + HEALTH_HELP),
    "memory_size_bytes": (["system", "module"], "Capacity of a memory module."),
    "drive_health": (["system", "drive"], "Health of a drive." + HEALTH_HELP),
    "drive_capacity_bytes": (["system", "drive"], "Capacity of a drive."),
    "chassis_health": (["chassis"], "Health of the chassis." + HEALTH_HELP),
    "temperature_celsius": (SENSOR, "Temperature (Thermal, a Sensor or ThermalMetrics)."),
    "temperature_health": (SENSOR, "Health of a temperature sensor." + HEALTH_HELP),
    "voltage_volts": (SENSOR, "Voltage (Power Voltages or a Sensor)."),
    "voltage_health": (SENSOR, "Health of a voltage sensor." + HEALTH_HELP),
    "current_amperes": (SENSOR, "Current (a Sensor)."),
    "power_watts": (SENSOR, "Power through one part (a Sensor); the chassis' total is below."),
    "sensor_ratio": (SENSOR, "A percentage Sensor other than a fan, as a 0-1 ratio."),
    "sensor_health": (SENSOR, "Health of a current, power or percentage Sensor." + HEALTH_HELP),
    "fan_speed_rpm": (["chassis", "fan"], "Fan speed in RPM."),
    "fan_speed_ratio": (["chassis", "fan"], "Fan speed as a fraction of full speed."),
    "fan_health": (["chassis", "fan"], "Health of a fan." + HEALTH_HELP),
    "power_consumed_watts": (
        ["chassis", "control"],
        "Power consumed by the chassis (Power PowerControl, or EnvironmentMetrics PowerWatts).",
    ),
    "power_supply_health": (["chassis", "supply"], "Health of a power supply." + HEALTH_HELP),
    "power_supply_input_watts": (["chassis", "supply"], "Input power of a power supply."),
    "power_supply_output_watts": (["chassis", "supply"], "Output power of a power supply."),
    "power_supply_input_voltage_volts": (["chassis", "supply"], "Input voltage of a PSU."),
}


class Out:
    """The families of one collection, in a fixed order; a label set is exported once."""

    def __init__(self) -> None:
        self.gauges = {
            key: GaugeMetricFamily(f"hw_redfish_{key}", doc, labels=labels)
            for key, (labels, doc) in GAUGES.items()
        }
        self.info = InfoMetricFamily(
            "hw_redfish_system",
            "Inventory of a computer system; always 1.",
            labels=["system", "manufacturer", "model", "serial_number"],
        )
        self._seen: set[tuple[str, tuple[str, ...]]] = set()

    def add(self, key: str, labels: list[str], value: Any) -> None:
        """Add a sample when ``value`` is a number (Redfish readings may be null)."""
        number = scaled(value, 1.0)
        if number is not None and (key, tuple(labels)) not in self._seen:
            self._seen.add((key, tuple(labels)))  # two series with one label set break a scrape
            self.gauges[key].add_metric(labels, number)

    def health(self, key: str, labels: list[str], resource: dict[str, Any]) -> None:
        """Add a resource's Status.Health when it reports one."""
        status = resource.get("Status")
        if isinstance(status, dict) and status.get("Health") in HEALTH:
            self.add(key, labels, HEALTH[status["Health"]])

    def families(self) -> list[Metric]:
        """The families that got samples."""
        found: list[Metric] = [family for family in self.gauges.values() if family.samples]
        return [self.info, *found] if self.info.samples else found


class Labels:
    """Unique label values within one chassis: a repeated name gets its Id appended."""

    def __init__(self) -> None:
        self._used: set[tuple[str, str]] = set()

    def claim(self, kind: str, name: Any, alternative: Any) -> str:
        """``name``, or ``name (alternative)`` when ``kind`` already has that name."""
        label = str(name or alternative)
        if (kind, label) in self._used:
            label = f"{label} ({alternative})"
        self._used.add((kind, label))
        return label


def scaled(value: Any, factor: float) -> float | None:
    """``value * factor`` when ``value`` is a number, else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) * factor
    return None


def link(resource: dict[str, Any], key: str) -> str | None:
    """The ``@odata.id`` of ``resource[key]``, when it is a link."""
    value = resource.get(key)
    target = value.get("@odata.id") if isinstance(value, dict) else None
    return target if isinstance(target, str) else None


def source(excerpt: Any) -> str | None:
    """The path of the Sensor a reading excerpt was copied from (its DataSourceUri)."""
    uri = excerpt.get("DataSourceUri") if isinstance(excerpt, dict) else None
    return urlsplit(uri).path.rstrip("/") if isinstance(uri, str) and uri else None


def reading(excerpt: Any, key: str = "Reading") -> Any:
    """A value of a reading excerpt (``{"Reading": 41, "DataSourceUri": ...}``)."""
    return excerpt.get(key) if isinstance(excerpt, dict) else None


def rid(resource: dict[str, Any]) -> str:
    """The resource's Id, else the last segment of its @odata.id."""
    value = resource.get("Id")
    if isinstance(value, str) and value:
        return value
    return str(resource.get("@odata.id", "")).rstrip("/").rpartition("/")[2]


def items(array: Any, name_key: str = "Name") -> list[tuple[str, str, dict[str, Any]]]:
    """(name, MemberId, item) for each object of an inline Redfish array (index when absent).

    The name is ``Name``, else ``name_key`` (Thermal 1.0 fans have only ``FanName``).
    """
    found = []
    for index, item in enumerate(array if isinstance(array, list) else []):
        if isinstance(item, dict):
            member = str(item.get("MemberId") or index)
            found.append((str(item.get("Name") or item.get(name_key) or member), member, item))
    return found
