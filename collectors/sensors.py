"""Temperatures, fans and battery as psutil reports them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import BlockingCollector, NotApplicable
from collectors.registry import register


def _sensor_label(label: str, index: int) -> str:
    return label or f"sensor{index}"


@register(
    "sensors",
    description="Temperatures, fans and battery via psutil",
    default_enabled=False,  # hwmon reads the same sysfs files, honours --path.sysfs
    interval="1m",
    timeout="30s",
)
class SensorsCollector(BlockingCollector):
    """psutil.sensors_temperatures / sensors_fans / sensors_battery."""

    def collect_blocking(self) -> Sequence[Metric]:
        """Return every sensor psutil can read; not applicable when there are none."""
        psutil = self.ctx.psutil
        labels = ["chip", "sensor"]
        temp = GaugeMetricFamily(
            "hw_sensors_temperature_celsius", "Temperature reading.", labels=labels
        )
        high = GaugeMetricFamily(
            "hw_sensors_temperature_high_celsius", "High temperature threshold.", labels=labels
        )
        crit = GaugeMetricFamily(
            "hw_sensors_temperature_critical_celsius",
            "Critical temperature threshold.",
            labels=labels,
        )
        fans = GaugeMetricFamily("hw_sensors_fan_speed_rpm", "Fan speed.", labels=labels)
        found = 0
        temperatures: dict[str, list[Any]] = (
            getattr(psutil, "sensors_temperatures", lambda: {})() or {}
        )
        for chip, readings in sorted(temperatures.items()):
            for index, reading in enumerate(readings):
                values = [chip, _sensor_label(reading.label, index)]
                temp.add_metric(values, float(reading.current))
                if reading.high:
                    high.add_metric(values, float(reading.high))
                if reading.critical:
                    crit.add_metric(values, float(reading.critical))
                found += 1
        fan_readings: dict[str, list[Any]] = getattr(psutil, "sensors_fans", lambda: {})() or {}
        for chip, readings in sorted(fan_readings.items()):
            for index, reading in enumerate(readings):
                fans.add_metric([chip, _sensor_label(reading.label, index)], float(reading.current))
                found += 1
        families: list[Metric] = [temp, high, crit, fans]
        battery = getattr(psutil, "sensors_battery", lambda: None)()
        if battery is not None:
            found += 1
            families.append(
                GaugeMetricFamily(
                    "hw_sensors_battery_charge_ratio",
                    "Battery charge (0-1).",
                    value=battery.percent / 100,
                )
            )
            if battery.power_plugged is not None:
                families.append(
                    GaugeMetricFamily(
                        "hw_sensors_battery_power_plugged",
                        "1 if on AC power.",
                        value=1.0 if battery.power_plugged else 0.0,
                    )
                )
        if not found:
            raise NotApplicable("psutil reports no temperature, fan or battery sensors")
        return families
