"""Remote BMC health over Redfish: systems, memory, drives, and each chassis (redfish_chassis)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
from prometheus_client.metrics_core import Metric

from collectors.base import Collector, CollectorContext, CollectorError
from collectors.redfish_chassis import ChassisWalk
from collectors.redfish_client import ROOT, RedfishClient
from collectors.redfish_families import Out, link, rid, scaled
from collectors.redfish_reader import Reader, expands
from collectors.toolkit.remote import RemoteModule, RemoteTarget


class RedfishCollector(Collector):
    """Walks one Redfish service per collection; the session token is kept between polls."""

    def __init__(self, ctx: CollectorContext, client: RedfishClient) -> None:
        super().__init__(ctx)
        self.client = client
        self.read = Reader(client, self.skip)

    async def collect(self) -> Sequence[Metric]:
        """Listed systems are required; their parts and the chassis are best effort."""
        root = await self.read.get(ROOT)
        self.read.expand = expands(root)
        out = Out()
        systems = link(root, "Systems")
        if systems is None and link(root, "Chassis") is None:
            raise CollectorError("the service root lists neither Systems nor Chassis")
        for system in await self.read.members(systems) if systems else []:
            await self._system(out, system)
        for chassis in await self.read.optional_members(root, "Chassis"):
            await ChassisWalk(self.read, out, chassis).walk()
        return out.families()

    async def close(self) -> None:
        """Log out of the BMC (evicted target, shutdown)."""
        await self.client.logout()

    async def _system(self, out: Out, system: dict[str, Any]) -> None:
        name = rid(system)
        out.health("system_health", [name], system)
        power = system.get("PowerState")
        if isinstance(power, str):
            out.add("system_power_on", [name], float(power == "On"))
        inventory = [str(system.get(k) or "") for k in ("Manufacturer", "Model", "SerialNumber")]
        out.info.add_metric([name, *inventory], {})
        for dimm in await self.read.optional_members(system, "Memory"):
            labels = [name, rid(dimm)]
            out.health("memory_health", labels, dimm)
            out.add("memory_size_bytes", labels, scaled(dimm.get("CapacityMiB"), 2**20))
        for storage in await self.read.optional_members(system, "Storage"):
            for drive in await self.read.linked(storage.get("Drives")):
                labels = [name, rid(drive)]
                out.health("drive_health", labels, drive)
                out.add("drive_capacity_bytes", labels, drive.get("CapacityBytes"))


def redfish_driver(
    module: RemoteModule, target: RemoteTarget, http: aiohttp.ClientSession
) -> RedfishCollector:
    """The ``redfish`` driver: a collector for one target."""
    return RedfishCollector(
        CollectorContext(timeout=module.timeout), RedfishClient(http, module, target)
    )
