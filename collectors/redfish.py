"""Remote BMC health over Redfish: systems, memory, drives, chassis thermal and power."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiohttp
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import Collector, CollectorContext, CollectorError
from collectors.redfish_client import ROOT, NotFound, RedfishClient
from collectors.toolkit.remote import RemoteModule, RemoteTarget

MAX_MEMBERS = 256  # members read per collection; the rest are counted as skipped
HEALTH = {"OK": 0.0, "Warning": 1.0, "Critical": 2.0}
HEALTH_HELP = " 0 = OK, 1 = Warning, 2 = Critical (Redfish Status.Health)."
GAUGES = {
    "system_health": (["system"], "Health of the computer system." + HEALTH_HELP),
    "system_power_on": (["system"], "1 if the system's PowerState is On, else 0."),
    "memory_health": (["system", "module"], "Health of a memory module." + HEALTH_HELP),
    "memory_size_bytes": (["system", "module"], "Capacity of a memory module."),
    "drive_health": (["system", "drive"], "Health of a drive." + HEALTH_HELP),
    "drive_capacity_bytes": (["system", "drive"], "Capacity of a drive."),
    "chassis_health": (["chassis"], "Health of the chassis." + HEALTH_HELP),
    "temperature_celsius": (["chassis", "sensor"], "Temperature reading (Chassis Thermal)."),
    "temperature_health": (["chassis", "sensor"], "Health of a temperature sensor." + HEALTH_HELP),
    "fan_speed_rpm": (["chassis", "fan"], "Fan speed reading in RPM (Chassis Thermal)."),
    "fan_speed_ratio": (["chassis", "fan"], "Fan speed reading as a fraction of full speed."),
    "fan_health": (["chassis", "fan"], "Health of a fan." + HEALTH_HELP),
    "power_consumed_watts": (["chassis", "control"], "Power consumed (PowerControl)."),
    "power_supply_health": (["chassis", "supply"], "Health of a power supply." + HEALTH_HELP),
    "power_supply_input_watts": (["chassis", "supply"], "Input power of a power supply."),
}


class Out:
    """The families of one collection, created on first use, in a fixed order."""

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

    def add(self, key: str, labels: list[str], value: Any) -> None:
        """Add a sample when ``value`` is a number (Redfish readings may be null)."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.gauges[key].add_metric(labels, float(value))

    def health(self, key: str, labels: list[str], resource: dict[str, Any]) -> None:
        """Add a resource's Status.Health when it reports one."""
        status = resource.get("Status")
        if isinstance(status, dict) and status.get("Health") in HEALTH:
            self.gauges[key].add_metric(labels, HEALTH[status["Health"]])

    def families(self) -> list[Metric]:
        """The families that got samples."""
        found: list[Metric] = [family for family in self.gauges.values() if family.samples]
        return [self.info, *found] if self.info.samples else found


class RedfishCollector(Collector):
    """Walks one Redfish service per collection; the session token is kept between polls."""

    def __init__(self, ctx: CollectorContext, client: RedfishClient) -> None:
        super().__init__(ctx)
        self.client = client

    async def collect(self) -> Sequence[Metric]:
        """Systems are required; their parts, chassis thermal and power are best effort."""
        root = await self.client.get(ROOT)
        out = Out()
        systems = _link(root, "Systems")
        if systems is None:
            raise CollectorError("the service root lists no Systems")
        for system in await self._members(systems):
            await self._system(out, system)
        chassis = _link(root, "Chassis")
        for item in await self._members(chassis) if chassis else []:
            await self._chassis(out, item)
        return out.families()

    async def close(self) -> None:
        """Log out of the BMC (evicted target, shutdown)."""
        await self.client.logout()

    async def _members(self, path: str) -> list[dict[str, Any]]:
        """Every member of a collection (its first MAX_MEMBERS)."""
        collection = await self.client.get(path)
        links = [m.get("@odata.id") for m in collection.get("Members", []) if isinstance(m, dict)]
        paths = [p for p in links if isinstance(p, str)]
        for extra in paths[MAX_MEMBERS:]:
            self.skip(extra, f"more than {MAX_MEMBERS} members in {path}")
        return list(await asyncio.gather(*(self.client.get(p) for p in paths[:MAX_MEMBERS])))

    async def _optional(self, resource: dict[str, Any], key: str) -> dict[str, Any] | None:
        """A linked sub-resource; None when absent, or unreadable (then one skipped item)."""
        path = _link(resource, key)
        if path is None:
            return None
        try:
            return await self.client.get(path)
        except NotFound:
            return None  # not exposed by this service
        except CollectorError as exc:
            self.skip(path, str(exc))
            return None

    async def _optional_members(self, resource: dict[str, Any], key: str) -> list[dict[str, Any]]:
        path = _link(resource, key)
        if path is None:
            return []
        try:
            return await self._members(path)
        except NotFound:
            return []
        except CollectorError as exc:
            self.skip(path, str(exc))
            return []

    async def _system(self, out: Out, system: dict[str, Any]) -> None:
        name = _id(system)
        out.health("system_health", [name], system)
        power = system.get("PowerState")
        if isinstance(power, str):
            out.add("system_power_on", [name], float(power == "On"))
        inventory = [str(system.get(k) or "") for k in ("Manufacturer", "Model", "SerialNumber")]
        out.info.add_metric([name, *inventory], {})
        for dimm in await self._optional_members(system, "Memory"):
            labels = [name, _id(dimm)]
            out.health("memory_health", labels, dimm)
            out.add("memory_size_bytes", labels, _scaled(dimm.get("CapacityMiB"), 2**20))
        for storage in await self._optional_members(system, "Storage"):
            for link in storage.get("Drives", [])[:MAX_MEMBERS]:
                drive = await self._optional({"Drive": link}, "Drive")
                if drive is not None:
                    labels = [name, _id(drive)]
                    out.health("drive_health", labels, drive)
                    out.add("drive_capacity_bytes", labels, drive.get("CapacityBytes"))

    async def _chassis(self, out: Out, chassis: dict[str, Any]) -> None:
        name = _id(chassis)
        out.health("chassis_health", [name], chassis)
        thermal = await self._optional(chassis, "Thermal")
        if thermal is not None:
            for sensor, item in _named(thermal.get("Temperatures")):
                out.add("temperature_celsius", [name, sensor], item.get("ReadingCelsius"))
                out.health("temperature_health", [name, sensor], item)
            for fan, item in _named(thermal.get("Fans")):
                reading = item.get("Reading")
                if item.get("ReadingUnits") == "Percent":
                    out.add("fan_speed_ratio", [name, fan], _scaled(reading, 0.01))
                else:
                    out.add("fan_speed_rpm", [name, fan], reading)
                out.health("fan_health", [name, fan], item)
        power = await self._optional(chassis, "Power")
        if power is not None:
            for control, item in _named(power.get("PowerControl")):
                out.add("power_consumed_watts", [name, control], item.get("PowerConsumedWatts"))
            for supply, item in _named(power.get("PowerSupplies")):
                out.health("power_supply_health", [name, supply], item)
                out.add("power_supply_input_watts", [name, supply], item.get("PowerInputWatts"))


def _scaled(value: Any, factor: float) -> float | None:
    """``value * factor`` when ``value`` is a number, else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) * factor
    return None


def _link(resource: dict[str, Any], key: str) -> str | None:
    value = resource.get(key)
    link = value.get("@odata.id") if isinstance(value, dict) else None
    return link if isinstance(link, str) else None


def _id(resource: dict[str, Any]) -> str:
    """The resource's Id, else the last segment of its @odata.id."""
    rid = resource.get("Id")
    if isinstance(rid, str) and rid:
        return rid
    return str(resource.get("@odata.id", "")).rstrip("/").rpartition("/")[2]


def _named(items: Any) -> list[tuple[str, dict[str, Any]]]:
    """(unique name, item) for each object in a Redfish array (Name, else MemberId)."""
    seen: set[str] = set()
    named = []
    for index, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict):
            continue
        name = str(item.get("Name") or item.get("MemberId") or index)
        if name in seen:
            name = f"{name} ({item.get('MemberId', index)})"
        seen.add(name)
        named.append((name, item))
    return named


def redfish_driver(
    module: RemoteModule, target: RemoteTarget, http: aiohttp.ClientSession
) -> RedfishCollector:
    """The ``redfish`` driver: a collector for one target."""
    return RedfishCollector(
        CollectorContext(timeout=module.timeout), RedfishClient(http, module, target)
    )
