"""NVIDIA GPU inventory, temperature, power, memory, utilization, ECC and clocks via nvidia-smi."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import Collector, CollectorContext, CollectorError, NotApplicable
from collectors.registry import register
from collectors.toolkit.fanout import Budget
from collectors.toolkit.tools import Tool, run_tool

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MHZ = 1e6
LABELS = ["gpu", "uuid"]
# Identity fields, always queried; the info metric carries the inventory strings.
INFO_FIELDS = ("index", "uuid", "name", "driver_version", "pci.bus_id")
INVALID_FIELD = re.compile(r'Field "([^"]+)" is not a valid field to query')
NVIDIA_SMI = Tool(
    "nvidia-smi",
    privilege="the exporter user needs read/write access to the NVIDIA device files "
    "(/dev/nvidiactl, /dev/nvidia0, ...), e.g. through the group the driver gives them "
    "(NVreg_DeviceFileGID)",
    answers="the GPU driver",
)


def _pstate(value: str) -> float:
    if not re.fullmatch(r"P\d+", value):
        raise ValueError(value)
    return float(value[1:])


def _yes_no(value: str) -> float:
    return {"Yes": 1.0, "No": 0.0}[value]


@dataclass(frozen=True)
class Field:
    """One ``--query-gpu`` property and the metric family it fills."""

    query: str
    metric: str
    help: str
    scale: float = 1.0
    counter: bool = False
    parse: Callable[[str], float] = float


FIELDS = (
    Field("temperature.gpu", "hw_gpu_temperature_celsius", "GPU core temperature."),
    Field("temperature.memory", "hw_gpu_memory_temperature_celsius", "GPU memory temperature."),
    Field("power.draw", "hw_gpu_power_draw_watts", "Power drawn by the GPU board."),
    Field("power.limit", "hw_gpu_power_limit_watts", "Software power limit."),
    Field("enforced.power.limit", "hw_gpu_power_enforced_limit_watts", "Enforced power limit."),
    Field("memory.total", "hw_gpu_memory_total_bytes", "Total GPU memory.", MIB),
    Field("memory.used", "hw_gpu_memory_used_bytes", "Used GPU memory.", MIB),
    Field(
        "utilization.gpu",
        "hw_gpu_utilization_ratio",
        "Fraction of the last sample period one or more kernels ran.",
        0.01,
    ),
    Field(
        "utilization.memory",
        "hw_gpu_memory_utilization_ratio",
        "Fraction of the last sample period device memory was read or written.",
        0.01,
    ),
    Field(
        "ecc.errors.corrected.volatile.total",
        "hw_gpu_ecc_errors_corrected",
        "Corrected ECC errors since the driver loaded (resets at reboot/driver reload).",
    ),
    Field(
        "ecc.errors.uncorrected.volatile.total",
        "hw_gpu_ecc_errors_uncorrected",
        "Uncorrected ECC errors since the driver loaded (resets at reboot/driver reload).",
    ),
    Field(
        "ecc.errors.corrected.aggregate.total",
        "hw_gpu_ecc_errors_corrected_aggregate",
        "Corrected ECC errors over the GPU's lifetime.",
        counter=True,
    ),
    Field(
        "ecc.errors.uncorrected.aggregate.total",
        "hw_gpu_ecc_errors_uncorrected_aggregate",
        "Uncorrected ECC errors over the GPU's lifetime.",
        counter=True,
    ),
    Field(
        "remapped_rows.correctable",
        "hw_gpu_remapped_rows_correctable",
        "Rows remapped for correctable errors.",
    ),
    Field(
        "remapped_rows.uncorrectable",
        "hw_gpu_remapped_rows_uncorrectable",
        "Rows remapped for uncorrectable errors.",
    ),
    Field(
        "remapped_rows.pending",
        "hw_gpu_remapped_rows_pending",
        "1 when a row remap is pending (needs a GPU reset).",
        parse=_yes_no,
    ),
    Field(
        "remapped_rows.failure",
        "hw_gpu_remapped_rows_failure",
        "1 when a row remap failed.",
        parse=_yes_no,
    ),
    Field("fan.speed", "hw_gpu_fan_speed_ratio", "Intended fan speed as a fraction.", 0.01),
    Field("clocks.current.sm", "hw_gpu_clock_sm_hertz", "Current SM clock.", MHZ),
    Field("clocks.current.memory", "hw_gpu_clock_memory_hertz", "Current memory clock.", MHZ),
    Field("clocks.current.graphics", "hw_gpu_clock_graphics_hertz", "Current graphics clock.", MHZ),
    Field(
        "pstate",
        "hw_gpu_performance_state",
        "Performance state (0 = P0, maximum performance, to 15 = P15, minimum).",
        parse=_pstate,
    ),
    Field("pcie.link.gen.current", "hw_gpu_pcie_link_generation", "Current PCIe generation."),
    Field("pcie.link.width.current", "hw_gpu_pcie_link_width", "Current PCIe link width."),
)


def absent(value: str) -> bool:
    """nvidia-smi's "no value": ``[N/A]``, ``[Not Supported]``, ``N/A``, empty."""
    return not value or value == "N/A" or (value.startswith("[") and value.endswith("]"))


def parse_rows(text: str, fields: Sequence[str]) -> list[dict[str, str]]:
    """Rows of ``--format=csv,noheader,nounits`` output, keyed by field name."""
    rows = []
    lines = [line for line in text.splitlines() if line.strip()]
    for number, row in enumerate(csv.reader(lines, skipinitialspace=True), 1):
        if len(row) != len(fields):
            raise CollectorError(
                f"unexpected nvidia-smi output at line {number}: expected {len(fields)} "
                f"comma-separated fields, got {len(row)}: {lines[number - 1][:120]!r}"
            )
        values = dict(zip(fields, (v.strip() for v in row), strict=True))
        if not values["index"].isdigit():
            raise CollectorError(
                f"unexpected nvidia-smi output at line {number}: GPU index "
                f"{values['index'][:40]!r} is not a number"
            )
        rows.append(values)
    return rows


@register(
    "gpu",
    description="NVIDIA GPU temperature, power, memory, utilization, ECC and clocks via nvidia-smi",
    interval="1m",
    timeout="30s",
    tool="nvidia-smi",
)
class GpuCollector(Collector):
    """One ``nvidia-smi --query-gpu`` run per collection."""

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        # Fields this driver rejected as unknown (older drivers); not asked for again.
        self.unsupported: set[str] = set()

    async def collect(self) -> Sequence[Metric]:
        """Query every GPU; fields the driver does not know are dropped and retried."""
        unsupported = self.unsupported
        budget = Budget.of(self.ctx.timeout)
        while True:
            fields = [*INFO_FIELDS, *(f.query for f in FIELDS if f.query not in unsupported)]
            args = [f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]
            what = "nvidia-smi --query-gpu"
            result = await run_tool(self.ctx.runner, NVIDIA_SMI, args, budget.left(), what)
            output = (result.stdout + result.stderr).decode(errors="replace")
            invalid = INVALID_FIELD.search(output)
            if result.returncode == 0 or not invalid or invalid.group(1) not in fields:
                break
            if invalid.group(1) in INFO_FIELDS:
                raise CollectorError(f"nvidia-smi does not know the field {invalid.group(1)!r}")
            log.info("nvidia-smi does not know %s; querying without it", invalid.group(1))
            unsupported.add(invalid.group(1))
        if result.returncode != 0:
            self._fail(result.returncode, output)
        rows = parse_rows(result.stdout.decode(errors="replace"), fields)
        if not rows:
            raise NotApplicable("nvidia-smi lists no GPU")
        return self._families(rows)

    @staticmethod
    def _fail(returncode: int, output: str) -> None:
        if returncode == 6 or "No devices were found" in output:
            raise NotApplicable("nvidia-smi found no NVIDIA GPU")
        if returncode == 4 or "Insufficient Permissions" in output:
            raise NVIDIA_SMI.denied("nvidia-smi reported insufficient permissions")
        if returncode == 9 or "couldn't communicate with the NVIDIA driver" in output:
            raise CollectorError(
                "nvidia-smi cannot communicate with the NVIDIA driver (exit status 9): the "
                "kernel module is not loaded or does not match the installed driver"
            )
        first = output.strip().splitlines()[0][:200] if output.strip() else "no output"
        raise CollectorError(f"nvidia-smi exit status {returncode}: {first}")

    @staticmethod
    def _families(rows: list[dict[str, str]]) -> list[Metric]:
        info = InfoMetricFamily("hw_gpu", "NVIDIA GPU inventory from nvidia-smi.", labels=LABELS)
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for field in FIELDS:
            kind = CounterMetricFamily if field.counter else GaugeMetricFamily
            families[field.query] = kind(field.metric, field.help, labels=LABELS)
        for row in rows:
            labels = [row["index"], row["uuid"]]
            info.add_metric(
                labels,
                {
                    "name": row["name"],
                    "driver_version": row["driver_version"],
                    "pci_bus_id": row["pci.bus_id"],
                },
            )
            for field in FIELDS:
                value = row.get(field.query, "")
                if absent(value):
                    continue
                try:
                    number = field.parse(value) * field.scale
                except (ValueError, KeyError):
                    log.warning(
                        "nvidia-smi %s=%r on GPU %s is not a value", field.query, value, labels[0]
                    )
                    continue
                families[field.query].add_metric(labels, number)
        return [info, *families.values()]
