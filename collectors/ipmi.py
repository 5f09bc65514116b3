"""BMC sensors, DCMI power and SEL usage through ipmitool (in-band, /dev/ipmi0)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import Collector, CollectorContext, CollectorError, NotApplicable
from collectors.ipmi_parse import (
    DcmiReading,
    Reading,
    SelInfo,
    parse_dcmi_power,
    parse_sdr_elist,
    parse_sel_info,
    parse_sensor_list,
)
from collectors.registry import register
from collectors.toolkit.fanout import Budget
from collectors.toolkit.options import Choice, CollectorOption, Flag
from collectors.toolkit.runner import CommandResult
from collectors.toolkit.tools import Tool, run_tool, says_denied

T = TypeVar("T")
log = logging.getLogger(__name__)

VALUE_FAMILIES = {
    "temperature": ("hw_ipmi_temperature_celsius", "Temperature sensor reading."),
    "fan": ("hw_ipmi_fan_speed_rpm", "Fan speed sensor reading."),
    "voltage": ("hw_ipmi_voltage_volts", "Voltage sensor reading."),
    "current": ("hw_ipmi_current_amperes", "Current sensor reading."),
    "power": ("hw_ipmi_power_watts", "Power sensor reading."),
    "ratio": (
        "hw_ipmi_sensor_ratio",
        "Sensor reading reported in percent, as a ratio (fan duty, CPU or memory usage).",
    ),
}
SOURCES = {"sdr": ["sdr", "elist"], "sensor": ["sensor"]}
IPMITOOL = Tool(
    "ipmitool",
    privilege="run the exporter as root or give its user read/write access to /dev/ipmi0 "
    "(e.g. a udev rule setting its group)",
    answers="the BMC",
)
DCMI_UNSUPPORTED = ("Invalid command", "not supported", "Invalid data field")


@register(
    "ipmi",
    description="BMC sensors, DCMI power and SEL usage via ipmitool",
    interval="5m",
    timeout="1m",
    tool="ipmitool",
    options=(
        CollectorOption(
            "source",
            "sdr",
            "sensor listing: 'sdr' (ipmitool sdr elist: analog and discrete sensors) or "
            "'sensor' (ipmitool sensor: threshold sensors only)",
            Choice(tuple(SOURCES)),
        ),
        CollectorOption(
            "dcmi", "true", "also read DCMI power (ipmitool dcmi power reading)", Flag()
        ),
        CollectorOption("sel", "true", "also read SEL usage (ipmitool sel info)", Flag()),
    ),
)
class IpmiCollector(Collector):
    """Runs ipmitool sub-commands one after the other, each within the collector timeout."""

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self._reported: dict[str, str] = {}  # last failure logged per best-effort sub-command

    async def collect(self) -> Sequence[Metric]:
        """Sensors are required; DCMI and SEL are best effort."""
        source = self.options.text("source")
        budget = Budget.of(self.ctx.timeout)
        what = self._what(SOURCES[source])
        result = await self._run(SOURCES[source], budget)
        text = result.stdout.decode(errors="replace")
        if result.returncode != 0:
            reason = self._failure(result)
            if not text.strip():
                raise CollectorError(f"{what}: {reason}")
            log.warning("%s: %s; using the sensors it listed", what, reason)
        parse = parse_sdr_elist if source == "sdr" else parse_sensor_list
        # Thousands of sensors take a while to parse: off the event loop (skip() is thread-safe).
        readings = await asyncio.to_thread(parse, text, self.skip)
        families = await asyncio.to_thread(self._sensor_families, readings)
        if self.options.flag("dcmi"):
            dcmi = await self._optional(["dcmi", "power", "reading"], budget, parse_dcmi_power)
            if dcmi is not None:
                families.extend(_dcmi_families(dcmi))
        if self.options.flag("sel"):
            sel = await self._optional(["sel", "info"], budget, parse_sel_info)
            if sel is not None:
                families.extend(_sel_families(sel))
        return families

    def _what(self, args: list[str]) -> str:
        """A sub-command as messages name it."""
        return "ipmitool " + " ".join(args)

    def _argv(self, args: list[str]) -> list[str]:
        """ipmitool's arguments for one sub-command: the in-band device here."""
        return args

    def _env(self) -> dict[str, str] | None:
        """Variables added to ipmitool's environment: none in-band."""
        return None

    async def _run(self, args: list[str], budget: Budget) -> CommandResult:
        return await run_tool(
            self.ctx.runner,
            IPMITOOL,
            self._argv(args),
            budget.left(),
            self._what(args),
            self._env(),
        )

    def _failure(self, result: CommandResult) -> str:
        """Explain a failed run; raise NotApplicable when there is no IPMI device."""
        output = (result.stderr + result.stdout).decode(errors="replace").strip()
        if "Could not open device" in output:
            if says_denied(output):
                raise IPMITOOL.denied("ipmitool: opening the IPMI device")
            raise NotApplicable(
                "no IPMI device (/dev/ipmi0): no BMC, or the ipmi_si and ipmi_devintf "
                "kernel modules are not loaded"
            )
        first = output.splitlines()[0] if output else "no output"
        return f"exit status {result.returncode}: {first[:200]}"

    async def _optional(
        self, args: list[str], budget: Budget, parse: Callable[[str], T | None]
    ) -> T | None:
        """Run a best-effort sub-command; failures are logged, unreadable output skipped."""
        what = self._what(args)
        if budget.left() < 0.5:
            log.warning("%s skipped: collector timeout nearly used up", what)
            return None
        try:
            result = await self._run(args, budget)
            text = result.stdout.decode(errors="replace")
            if result.returncode != 0:
                reason = self._failure(result)
                unsupported = args[0] == "dcmi" and any(s in reason for s in DCMI_UNSUPPORTED)
                # The same refusal at every poll (a BMC that lets this user read sensors
                # but not DCMI) is worth one warning, not one per poll and target.
                repeated = self._reported.get(what) == reason
                self._reported[what] = reason
                level = logging.DEBUG if unsupported or repeated else logging.WARNING
                log.log(level, "%s failed (%s); not exported", what, reason)
                return None
        except (CollectorError, NotApplicable) as exc:
            log.warning("%s failed (%s); not exported", what, exc)
            return None
        try:
            return parse(text)
        except CollectorError as exc:
            self.skip(what, str(exc).removeprefix(f"{what}: "))
            return None

    @staticmethod
    def _sensor_families(readings: list[Reading]) -> list[Metric]:
        values = {
            kind: GaugeMetricFamily(name, doc, labels=["sensor"])
            for kind, (name, doc) in VALUE_FAMILIES.items()
        }
        state = GaugeMetricFamily(
            "hw_ipmi_sensor_state",
            "Sensor state: 0 nominal, 1 warning (non-critical), 2 critical "
            "(critical or non-recoverable).",
            labels=["sensor", "type"],
        )
        for reading in readings:
            if reading.value is not None and reading.type in values:
                values[reading.type].add_metric([reading.sensor], reading.value)
            if reading.state is not None:
                state.add_metric([reading.sensor, reading.type], reading.state)
        return [*values.values(), state]


def _dcmi_families(dcmi: DcmiReading) -> list[Metric]:
    active = GaugeMetricFamily(
        "hw_ipmi_dcmi_power_reading_activated",
        "1 when the BMC reports DCMI power measurement activated (OpenBMC reports 0 "
        "with real readings).",
        value=float(dcmi.activated),
    )
    readings = (dcmi.current, dcmi.minimum, dcmi.maximum, dcmi.average)
    if not dcmi.activated and not any(readings):
        return [active]  # deactivated and empty: nothing is measured
    families: list[Metric] = [
        active,
        GaugeMetricFamily(
            "hw_ipmi_dcmi_power_consumption_watts",
            "Instantaneous system power consumption reported by DCMI.",
            value=dcmi.current,
        ),
    ]
    for name, doc, value in (
        ("minimum", "Minimum", dcmi.minimum),
        ("maximum", "Maximum", dcmi.maximum),
        ("average", "Average", dcmi.average),
    ):
        families.append(
            GaugeMetricFamily(
                f"hw_ipmi_dcmi_power_consumption_{name}_watts",
                f"{doc} system power consumption over the DCMI sampling period.",
                value=value,
            )
        )
    if dcmi.period_seconds is not None:
        families.append(
            GaugeMetricFamily(
                "hw_ipmi_dcmi_power_sampling_period_seconds",
                "DCMI power statistics sampling period.",
                value=dcmi.period_seconds,
            )
        )
    return families


def _sel_families(sel: SelInfo) -> list[Metric]:
    families: list[Metric] = [
        GaugeMetricFamily("hw_ipmi_sel_entries", "Entries in the System Event Log.", sel.entries),
        GaugeMetricFamily(
            "hw_ipmi_sel_free_bytes",
            "Free space in the System Event Log (65535 means 65535 or more).",
            sel.free_bytes,
        ),
    ]
    if sel.used_ratio is not None:
        families.append(
            GaugeMetricFamily(
                "hw_ipmi_sel_used_ratio", "Fraction of the SEL in use.", sel.used_ratio
            )
        )
    if sel.overflow is not None:
        families.append(
            GaugeMetricFamily(
                "hw_ipmi_sel_overflow",
                "1 when the SEL overflowed and dropped events.",
                float(sel.overflow),
            )
        )
    return families
