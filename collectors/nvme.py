"""NVMe controller health (SMART / Health Information log) and inventory via nvme-cli and sysfs."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import Collector, CollectorError, NotApplicable, read_text
from collectors.nvme_health import FIELDS, HealthLog, health_families
from collectors.nvme_list import parse_list
from collectors.registry import register
from collectors.toolkit.errors import ToolError
from collectors.toolkit.fanout import Budget, fan_out
from collectors.toolkit.tools import Tool, run_tool, says_denied

log = logging.getLogger(__name__)

WORKERS = 4
# NVMe reports Kelvin; nvme-cli and smartctl both print K - 273, so hw_nvme_* matches them.
KELVIN = 273
NVME = Tool(
    "nvme",
    privilege="nvme-cli needs root, or CAP_SYS_ADMIN (Get Log Page is an NVMe admin command) "
    "plus read access to /dev/nvmeX",
    answers="the controller",
)
STATES = ("live", "connecting", "resetting", "deleting", "deleting (no IO)", "dead", "new")


@dataclass
class Controller:
    """What is known about one NVMe controller."""

    name: str
    info: dict[str, str] = field(default_factory=dict)
    state: str = ""
    log: dict[str, Any] | None = None
    error: str | None = None


def read_sysfs(sysfs: Path) -> dict[str, Controller]:
    """Controllers under class/nvme with model, serial, firmware and state."""
    found: dict[str, Controller] = {}
    base = sysfs / "class" / "nvme"
    if not base.is_dir():
        return found
    for path in sorted(base.iterdir()):
        info = {
            "model": read_text(path / "model") or "",
            "serial": read_text(path / "serial") or "",
            "firmware": read_text(path / "firmware_rev") or "",
        }
        found[path.name] = Controller(path.name, info, read_text(path / "state") or "")
    return found


def parse_smart_log(stdout: bytes) -> dict[str, Any]:
    """The ``nvme smart-log -o json`` object; raises ValueError when unusable."""
    try:
        doc = json.loads(stdout)
    except (ValueError, UnicodeDecodeError):
        if stdout.lstrip().startswith(b"{"):
            raise ValueError(f"truncated or invalid JSON: {_excerpt(stdout)}") from None
        raise ValueError(f"output is not JSON: {_excerpt(stdout)}") from None
    if not isinstance(doc, dict) or "critical_warning" not in doc or "temperature" not in doc:
        raise ValueError(f"not a SMART log (no critical_warning/temperature): {_excerpt(stdout)}")
    return doc


def _number(value: Any) -> float | None:
    if isinstance(value, dict):  # verbose output nests the bit field: {"value": n, ...}
        value = value.get("value")
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.replace(",", ""))
        except ValueError:
            return None
    return None


def _excerpt(data: bytes) -> str:
    text = data.decode(errors="replace").strip().replace("\n", " ")
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


@register(
    "nvme",
    description="NVMe health log (wear, spare, errors, temperature) and inventory via nvme-cli",
    interval="1h",
    timeout="1m",
    tool="nvme",
)
class NvmeCollector(Collector):
    """``nvme list`` + sysfs for inventory, one ``nvme smart-log`` per controller."""

    async def collect(self) -> Sequence[Metric]:
        """Read every controller's SMART log; fail only when none could be read."""
        budget = Budget.of(self.ctx.timeout)
        controllers = await asyncio.to_thread(read_sysfs, self.ctx.sysfs)
        for name, info in (await self._list(budget.left(), bool(controllers))).items():
            ctrl = controllers.setdefault(name, Controller(name))
            for key, value in info.items():
                ctrl.info[key] = ctrl.info.get(key) or value
        if not controllers:
            raise NotApplicable("no NVMe controllers (sysfs class/nvme and nvme list are empty)")
        ordered = sorted(controllers.values(), key=lambda c: int(re.sub(r"\D", "", c.name) or 0))
        for outcome in await fan_out(ordered, self._smart_log, budget, WORKERS):
            outcome.item.log, outcome.item.error = outcome.value, outcome.error
        failed = [c for c in ordered if c.log is None]
        if len(failed) == len(ordered):
            reasons = sorted({c.error or "unknown error" for c in failed})
            names = ", ".join(c.name for c in failed)
            raise CollectorError(
                f"nvme smart-log failed for every controller ({names}): " + " | ".join(reasons)
            )
        for ctrl in failed:
            log.warning("nvme: smart-log of %s failed: %s", ctrl.name, ctrl.error)
        return self._families(ordered)

    async def _list(self, timeout: float, have_sysfs: bool) -> dict[str, dict[str, str]]:
        result = await run_tool(self.ctx.runner, NVME, ["list", "-o", "json"], timeout)
        if result.returncode != 0:
            # nvme-cli exits non-zero when it finds no NVMe subsystem at all.
            message = result.stderr.decode(errors="replace").strip()
            if not have_sysfs:
                raise NotApplicable(f"no NVMe controllers (nvme list: {message})")
            log.warning("nvme: nvme list exited %d: %s", result.returncode, message)
            return {}
        try:
            return parse_list(result.stdout)
        except ValueError as exc:
            raise NVME.unusable("nvme list -o json", exc) from exc

    async def _smart_log(self, ctrl: Controller, timeout: float) -> dict[str, Any]:
        what = f"nvme smart-log /dev/{ctrl.name}"
        args = ["smart-log", f"/dev/{ctrl.name}", "-o", "json"]
        result = await run_tool(self.ctx.runner, NVME, args, timeout, what)
        if result.returncode != 0:
            message = (result.stderr or result.stdout).decode(errors="replace").strip()
            if says_denied(message):
                raise NVME.denied(what)
            raise ToolError(f"{what}: exit {result.returncode}: {message[:200]}")
        try:
            return parse_smart_log(result.stdout)
        except ValueError as exc:
            raise NVME.unusable(what, exc) from exc

    def _families(self, controllers: Sequence[Controller]) -> list[Metric]:
        info = InfoMetricFamily(
            "hw_nvme", "NVMe controller identity.", labels=["device", "model", "serial", "firmware"]
        )
        state = GaugeMetricFamily(
            "hw_nvme_controller_state",
            "1 for the controller's current sysfs state.",
            labels=["device", "state"],
        )
        readable = GaugeMetricFamily(
            "hw_nvme_smart_log_readable", "1 if nvme smart-log succeeded.", labels=["device"]
        )
        logs = []
        for ctrl in controllers:
            info.add_metric(
                [ctrl.name],
                {k: ctrl.info.get(k, "") for k in ("model", "serial", "firmware")},
            )
            if ctrl.state:
                for name in (*STATES, *(() if ctrl.state in STATES else (ctrl.state,))):
                    state.add_metric([ctrl.name, name], float(name == ctrl.state))
            readable.add_metric([ctrl.name], float(ctrl.log is not None))
            if ctrl.log is not None:
                logs.append(health_log(ctrl.name, ctrl.log))
        return [info, state, readable, *health_families(logs)]


def health_log(device: str, doc: dict[str, Any]) -> HealthLog:
    """The health log of ``nvme smart-log -o json`` in base units."""
    log = HealthLog(device)
    kelvin = _number(doc.get("temperature"))
    if kelvin:
        log.temperature = kelvin - KELVIN
    for key, value in doc.items():
        match = re.fullmatch(r"temperature_sensor_(\d+)", key)
        reading = _number(value)
        if match and reading:
            log.sensors[match.group(1)] = reading - KELVIN
    for health in FIELDS:
        number = _number(doc.get(health.nvme_cli))
        if number is not None:
            log.values[health.metric] = number * health.scale
    return log
