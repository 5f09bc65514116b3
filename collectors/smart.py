"""SMART health, attributes and inventory of every disk via smartctl's JSON output."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from prometheus_client.metrics_core import Metric

from collectors.base import Collector, CollectorContext, CollectorError, NotApplicable
from collectors.registry import register
from collectors.smart_devices import DeviceList, by_id_names, configured, one_per_disk, override
from collectors.smart_families import build_families
from collectors.smart_parse import SMARTCTL, Device, DeviceResult, classify, parse_scan
from collectors.smart_power import (
    POWER_MODES,
    PowerModeOverrides,
    last_read_family,
    nocheck_args,
)
from collectors.toolkit.fanout import Budget, fan_out
from collectors.toolkit.options import Choice, CollectorOption, Duration, Flag, Integer, Regex
from collectors.toolkit.tools import run_tool

log = logging.getLogger(__name__)

READ_ARGS = (
    "--json",
    "--info",
    "--health",
    "--attributes",
    "--capabilities",  # NVMe temperature thresholds (smartctl >= 7.5); reads no more data
    "--tolerance=verypermissive",
    "--format=brief",
    "--log=error",
    "--log=selftest",
    "--log=sasphy",  # SAS phy link rates; SCSI disks only, ignored for ATA and NVMe
)


@register(
    "smart",
    description="SMART health, attributes and inventory of every disk via smartctl",
    interval="6h",
    timeout="2m",
    tool="smartctl",
    also_exports=("hw_nvme",),  # the NVMe health log, under the nvme collector's names
    options=(
        CollectorOption(
            "devices",
            "",
            "comma-separated devices, each optionally ;TYPE for smartctl -d "
            "(e.g. sda,/dev/bus/0;megaraid,3; default: smartctl --scan-open)",
            DeviceList(),
        ),
        CollectorOption(
            "device-type-override",
            "",
            "comma-separated DEVICE;TYPE forcing smartctl -d for a device (e.g. /dev/sdc;sat "
            "for a USB bridge smartctl does not know)",
            DeviceList(require_type=True),
        ),
        CollectorOption(
            "dedupe",
            "true",
            "export a disk reached by several paths (multipath, sdX and megaraid) once, "
            "keyed by model and WWN, else serial",
            Flag(),
        ),
        CollectorOption("device-include", "", "regex of device labels to read (e.g. ^sd)", Regex()),
        CollectorOption("device-exclude", "", "regex of device labels to skip", Regex()),
        CollectorOption("workers", "4", "devices read in parallel", Integer(1, 64)),
        CollectorOption(
            "device-timeout",
            "30s",
            "timeout of one device's smartctl run",
            Duration(positive=True),
        ),
        CollectorOption(
            "nocheck",
            "standby",
            "skip (never wake) a disk asleep in this power mode or a lower one: sleep < standby "
            "< idle; never = always read, waking it",
            Choice(POWER_MODES),
        ),
        CollectorOption(
            "nocheck-override",
            "",
            "per-device nocheck, DEVICE=MODE,... by device label (e.g. sdb=never for an SSD "
            "that claims standby falsely)",
            PowerModeOverrides(),
        ),
        CollectorOption(
            "nvme-health",
            "auto",
            "export the NVMe health log as hw_nvme_* from smartctl (auto: only when nvme-cli "
            "is not installed; otherwise the nvme collector exports the same series)",
            Choice(("auto", "true", "false")),
        ),
    ),
)
class SmartCollector(Collector):
    """Scans for disks, then runs one smartctl per disk with bounded parallelism."""

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        # Last data read from each disk while awake (and when), re-exported while it sleeps.
        self._last: dict[str, dict[str, Any]] = {}
        self._last_read: dict[str, float] = {}

    async def collect(self) -> Sequence[Metric]:
        """Read every selected device; fail only when none could be read."""
        budget = Budget.of(self.ctx.timeout)
        device_timeout = self.options.seconds("device-timeout")
        devices = self._select(await self._devices(budget.left(device_timeout)))
        if not devices:
            raise NotApplicable("no disks to read (smartctl found none, or all were filtered)")
        outcomes = await fan_out(
            devices, self._read, budget, self.options.integer("workers"), device_timeout
        )
        results = [
            self._remember(o.value or DeviceResult(o.item.label, False, error=o.error))
            for o in outcomes
        ]
        paths = {r.device: 1 for r in results}
        if self.options.flag("dedupe"):
            results, paths = one_per_disk(results)
        failed = [r for r in results if not r.readable]
        if len(failed) == len(results):
            raise CollectorError(_summary(failed))
        for result in failed:
            log.warning("smart: device %s could not be read: %s", result.device, result.error)
        nodes = await asyncio.to_thread(by_id_names, self.ctx.rootfs)
        by_id = {d.label: nodes[d.name] for d in devices if "," not in d.type and d.name in nodes}
        families = build_families(results, self._nvme_health(), self.skip, by_id, paths)
        return [*families, last_read_family(self._last_read, [r.device for r in results])]

    def _remember(self, result: DeviceResult) -> DeviceResult:
        if result.doc is not None:
            self._last[result.device] = result.doc
            self._last_read[result.device] = time.time()
        elif result.standby and result.device in self._last:
            return replace(result, doc=self._last[result.device])
        return result

    async def _devices(self, timeout: float) -> list[Device]:
        named = configured(self.options.text("devices"))
        found = named or await self._scan(timeout)
        return override(found, self.options.text("device-type-override"))

    async def _scan(self, timeout: float) -> list[Device]:
        args = ["--scan-open", "--json"]
        result = await run_tool(self.ctx.runner, SMARTCTL, args, timeout)
        try:
            return parse_scan(result.stdout)
        except ValueError as exc:
            what = f"smartctl --scan-open (exit {result.returncode})"
            raise SMARTCTL.unusable(what, exc) from exc

    def _select(self, devices: list[Device]) -> list[Device]:
        include = self.options.regex("device-include")
        exclude = self.options.regex("device-exclude")
        return [
            d
            for d in devices
            if (include is None or include.search(d.label))
            and (exclude is None or not exclude.search(d.label))
        ]

    async def _read(self, device: Device, timeout: float) -> DeviceResult:
        args = list(READ_ARGS)
        overrides = self.options.mapping("nocheck-override")
        args += nocheck_args(device.label, self.options.text("nocheck"), overrides)
        if device.type:
            args.append(f"--device={device.type}")
        args.append(device.name)
        result = await run_tool(self.ctx.runner, SMARTCTL, args, timeout, f"smartctl {device.name}")
        return classify(device.label, result.returncode, result.stdout, result.stderr)

    def _nvme_health(self) -> bool:
        choice = self.options.text("nvme-health")
        if choice == "auto":
            # The nvme collector (default-enabled, needs nvme-cli) exports the same fields.
            return self.ctx.runner.which("nvme") is None
        return choice == "true"


def _summary(failed: Sequence[DeviceResult]) -> str:
    """One message for 'no device readable', grouping devices that failed the same way."""
    by_reason: dict[str, list[str]] = {}
    for result in failed:
        by_reason.setdefault(result.error or "unknown error", []).append(result.device)
    parts = [f"{', '.join(devices)}: {reason}" for reason, devices in by_reason.items()]
    return f"smartctl could not read any of {len(failed)} devices: " + " | ".join(parts[:4])
