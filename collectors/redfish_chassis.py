"""One chassis' health, thermal and power readings, from the newer Redfish models or the old.

ThermalSubsystem and PowerSubsystem are read when the chassis links them, the deprecated
Thermal and Power otherwise. The Sensors collection adds what those leave out. A reading is
exported once: a fan, a power supply and EnvironmentMetrics name the Sensor each reading was
copied from (DataSourceUri), and that Sensor is not read again; ThermalMetrics' temperatures
are excerpts of temperature Sensors and only fill in for Sensors that were not read.
"""

from __future__ import annotations

from typing import Any

from collectors.redfish_families import Labels, Out, items, reading, rid, scaled, source
from collectors.redfish_reader import Reader

# Sensor ReadingType: (reading family, health family, factor per ReadingUnits; first: default).
KINDS: dict[str, tuple[str, str, dict[str, float]]] = {
    "Temperature": ("temperature_celsius", "temperature_health", {"Cel": 1.0}),
    "Voltage": ("voltage_volts", "voltage_health", {"V": 1.0, "mV": 1e-3}),
    "Current": ("current_amperes", "sensor_health", {"A": 1.0, "mA": 1e-3}),
    "Power": ("power_watts", "sensor_health", {"W": 1.0, "kW": 1e3, "mW": 1e-3}),
    "Rotational": ("fan_speed_rpm", "fan_health", {"RPM": 1.0, "{rev}/min": 1.0}),
    "Percent": ("sensor_ratio", "sensor_health", {"%": 0.01}),
}
UNIT_KINDS = {"Cel": "Temperature", "V": "Voltage", "A": "Current", "W": "Power", "%": "Percent"}
THERMAL_KINDS = {"Temperature", "Rotational", "Fan"}  # "Fan": a Percent sensor with SpeedRPM
POWER_KINDS = {"Voltage", "Current", "Power"}


class ChassisWalk:
    """Reads one chassis into ``out``; ``read`` skips and counts what it cannot read."""

    def __init__(self, read: Reader, out: Out, chassis: dict[str, Any]) -> None:
        self.read = read
        self.out = out
        self.chassis = chassis
        self.name = rid(chassis)
        self.labels = Labels()
        self.copied: set[str] = set()  # Sensors whose readings a component exported
        self.thermal_metrics: dict[str, Any] | None = None

    async def walk(self) -> None:
        """Health, then thermal and power (new model first), then the Sensors left."""
        self.out.health("chassis_health", [self.name], self.chassis)
        kinds = {"Percent"}
        if await self._thermal_subsystem() or not await self._thermal():
            kinds |= THERMAL_KINDS
        if await self._power_subsystem() or not await self._power():
            kinds |= POWER_KINDS
            await self._environment()
        if kinds != {"Percent"}:  # only the old models: their sensors are Thermal's and Power's
            read = await self._sensors(kinds)
            await self._thermal_metrics(read)

    async def _thermal_subsystem(self) -> bool:
        thermal = await self.read.optional(self.chassis, "ThermalSubsystem")
        if thermal is None:
            return False
        for fan in await self.read.optional_members(thermal, "Fans"):
            label = [self.name, self.labels.claim("fan", fan.get("Name"), rid(fan))]
            speed = fan.get("SpeedPercent")
            self._copy(speed, "fan_speed_ratio", label, scaled(reading(speed), 0.01))
            self._copy(speed, "fan_speed_rpm", label, reading(speed, "SpeedRPM"))
            self.out.health("fan_health", label, fan)
        self.thermal_metrics = await self.read.optional(thermal, "ThermalMetrics")
        return True

    async def _thermal(self) -> bool:
        thermal = await self.read.optional(self.chassis, "Thermal")
        if thermal is None:
            return False
        for name, member, item in items(thermal.get("Temperatures")):
            label = [self.name, self.labels.claim("sensor", name, member)]
            self.out.add("temperature_celsius", label, item.get("ReadingCelsius"))
            self.out.health("temperature_health", label, item)
        for name, member, item in items(thermal.get("Fans"), "FanName"):
            label = [self.name, self.labels.claim("fan", name, member)]
            if item.get("ReadingUnits") == "Percent":
                self.out.add("fan_speed_ratio", label, scaled(item.get("Reading"), 0.01))
            else:
                self.out.add("fan_speed_rpm", label, item.get("Reading"))
            self.out.health("fan_health", label, item)
        return True

    async def _power_subsystem(self) -> bool:
        power = await self.read.optional(self.chassis, "PowerSubsystem")
        if power is None:
            return False
        for supply in await self.read.optional_members(power, "PowerSupplies"):
            label = [self.name, self.labels.claim("supply", supply.get("Name"), rid(supply))]
            self.out.health("power_supply_health", label, supply)
            metrics = await self.read.optional(supply, "Metrics")
            if metrics is not None:
                for key, family in (
                    ("InputPowerWatts", "power_supply_input_watts"),
                    ("OutputPowerWatts", "power_supply_output_watts"),
                    ("InputVoltage", "power_supply_input_voltage_volts"),
                ):
                    self._copy(metrics.get(key), family, label, reading(metrics.get(key)))
        return True

    async def _power(self) -> bool:
        power = await self.read.optional(self.chassis, "Power")
        if power is None:
            return False
        for name, member, item in items(power.get("PowerControl")):
            label = [self.name, self.labels.claim("control", name, member)]
            self.out.add("power_consumed_watts", label, item.get("PowerConsumedWatts"))
        for name, member, item in items(power.get("PowerSupplies")):
            label = [self.name, self.labels.claim("supply", name, member)]
            self.out.health("power_supply_health", label, item)
            self.out.add("power_supply_input_watts", label, item.get("PowerInputWatts"))
            output = item.get("PowerOutputWatts", item.get("LastPowerOutputWatts"))
            self.out.add("power_supply_output_watts", label, output)
            self.out.add("power_supply_input_voltage_volts", label, item.get("LineInputVoltage"))
        for name, member, item in items(power.get("Voltages")):
            label = [self.name, self.labels.claim("sensor", name, member)]
            self.out.add("voltage_volts", label, item.get("ReadingVolts"))
            self.out.health("voltage_health", label, item)
        return True

    async def _environment(self) -> None:
        environment = await self.read.optional(self.chassis, "EnvironmentMetrics")
        if environment is not None:
            power = environment.get("PowerWatts")
            label = [self.name, self.labels.claim("control", "EnvironmentMetrics", "chassis")]
            self._copy(power, "power_consumed_watts", label, reading(power))

    async def _sensors(self, kinds: set[str]) -> set[str]:
        """Export the Sensors of ``kinds`` no component copied; returns the paths read."""
        read: set[str] = set()
        for sensor in await self.read.optional_members(self.chassis, "Sensors", self.copied):
            path = str(sensor.get("@odata.id", "")).rstrip("/")
            read.add(path)
            kind = sensor.get("ReadingType")
            if not isinstance(kind, str):  # older Sensors: the units say what they measure
                kind = UNIT_KINDS.get(str(sensor.get("ReadingUnits")), "")
            if kind == "Percent" and "SpeedRPM" in sensor:
                if "Fan" in kinds:
                    self._fan_sensor(sensor)
            elif kind in KINDS and kind in kinds:
                self._sensor(path, kind, sensor)
        return read

    def _sensor(self, path: str, kind: str, sensor: dict[str, Any]) -> None:
        family, health, units = KINDS[kind]
        unit = sensor.get("ReadingUnits")
        factor = units.get(str(unit), None) if unit is not None else next(iter(units.values()))
        if factor is None:
            self.read.skip(path, f"{kind} sensor in unknown units {str(unit)[:20]!r}")
            return
        namespace = "fan" if family == "fan_speed_rpm" else "sensor"
        label = [self.name, self.labels.claim(namespace, sensor.get("Name"), rid(sensor))]
        self.out.add(family, label, scaled(sensor.get("Reading"), factor))
        self.out.health(health, label, sensor)

    def _fan_sensor(self, sensor: dict[str, Any]) -> None:
        label = [self.name, self.labels.claim("fan", sensor.get("Name"), rid(sensor))]
        self.out.add("fan_speed_ratio", label, scaled(sensor.get("Reading"), 0.01))
        self.out.add("fan_speed_rpm", label, sensor.get("SpeedRPM"))
        self.out.health("fan_health", label, sensor)

    async def _thermal_metrics(self, read: set[str]) -> None:
        metrics = self.thermal_metrics or {}
        excerpts = metrics.get("TemperatureReadingsCelsius")
        for excerpt in excerpts if isinstance(excerpts, list) else []:
            path = source(excerpt)
            if path in read or not isinstance(excerpt, dict):
                continue  # the Sensor itself was read
            name = excerpt.get("DeviceName") or (path or "").rpartition("/")[2]
            label = [self.name, self.labels.claim("sensor", name, path)]
            self.out.add("temperature_celsius", label, reading(excerpt))

    def _copy(self, excerpt: Any, family: str, label: list[str], value: Any) -> None:
        """Export a component's reading; its source Sensor is then not exported again."""
        if scaled(value, 1.0) is None:
            return
        self.out.add(family, label, value)
        path = source(excerpt)
        if path is not None:
            self.copied.add(path)
