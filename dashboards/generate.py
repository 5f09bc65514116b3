"""Generate dashboards/hwcache-exporter.json (``make dashboard``; ``--check`` compares)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dashboards.panels import SEL, Json, bargauge, row, stat, table, timeseries

OUTPUT = Path(__file__).resolve().parent / "hwcache-exporter.json"
UID = "hwcache-exporter"
WIDTH = 24
AMBER_RED: list[Json] = [
    {"color": "green", "value": None},
    {"color": "orange", "value": 0.8},
    {"color": "red", "value": 1},
]
# The data age (the exporter exports timestamps, not ages); written out rather than using the
# recording rule hwcache_collector:data_age_seconds, so the dashboard works without the rules.
AGE = f"time() - hwcache_collector_last_success_timestamp_seconds{{{SEL}}}"
HDD_SECTORS = (
    "Reallocated_Sector_Ct|Current_Pending_Sector|Offline_Uncorrectable|Reported_Uncorrect"
)
SATA_WEAR = "Wear_Leveling_Count|Media_Wearout_Indicator|Percent_Lifetime_Remain|SSD_Life_Left"


def fleet() -> list[tuple[Json, int, int]]:
    """Hosts, failing and stale collectors, cache age."""
    return [
        (row("Fleet overview"), 24, 1),
        (
            stat(
                "Hosts",
                "Exporters answering (hwcache_build_info).",
                f"count(hwcache_build_info{{{SEL}}})",
                steps=[{"color": "blue", "value": None}],
            ),
            4,
            4,
        ),
        (
            stat(
                "Targets down",
                "Scrape targets of the selected jobs with up == 0.",
                f"sum(1 - up{{{SEL}}})",
            ),
            4,
            4,
        ),
        (
            stat(
                "Collectors failing",
                "Collectors whose last refresh failed (hwcache_collector_success == 0); their last good data is served.",
                f"sum(1 - hwcache_collector_success{{{SEL}}})",
            ),
            4,
            4,
        ),
        (
            stat(
                "Collectors stale",
                "Collectors serving data past their interval or after a failed refresh.",
                f"sum(hwcache_collector_stale{{{SEL}}})",
            ),
            4,
            4,
        ),
        (
            stat(
                "Oldest cache vs interval",
                "Largest cache age divided by the collector's interval: above 100% a refresh is overdue.",
                f"max(({AGE}) / hwcache_collector_interval_seconds{{{SEL}}})",
                "percentunit",
                AMBER_RED,
            ),
            8,
            4,
        ),
        (
            table(
                "Collectors per host",
                "Every collector on every selected host: success, stale, exact cache age, interval and duration of the last refresh.",
                [
                    ("success", f"hwcache_collector_success{{{SEL}}}"),
                    ("stale", f"hwcache_collector_stale{{{SEL}}}"),
                    ("age (s)", AGE),
                    ("interval (s)", f"hwcache_collector_interval_seconds{{{SEL}}}"),
                    ("duration (s)", f"hwcache_collector_duration_seconds{{{SEL}}}"),
                ],
            ),
            14,
            10,
        ),
        (
            bargauge(
                "Cache age by collector",
                "Oldest cache of each collector across the selected hosts.",
                f"max by (collector) ({AGE})",
                "{{collector}}",
                "s",
                [{"color": "green", "value": None}],
            ),
            10,
            10,
        ),
        (
            timeseries(
                "Cache age",
                "Exact age of each cached collector; a sawtooth resets at every refresh, a line climbing past its interval is a collector that stopped refreshing.",
                [(AGE, "{{instance}} {{collector}}")],
                "s",
            ),
            12,
            8,
        ),
        (
            table(
                "Failed refreshes since exporter start",
                "Refreshes that failed or timed out, per host and collector (counters since the exporter started).",
                [
                    (
                        "refreshes",
                        f'sum by (job, instance, collector, result) (hwcache_collector_refreshes_total{{{SEL},result=~"error|timeout"}})',
                    ),
                ],
            ),
            12,
            8,
        ),
    ]


def disks() -> list[tuple[Json, int, int]]:
    """SMART health, sectors, temperatures, NVMe wear and spare."""
    return [
        (row("Disks"), 24, 1),
        (
            stat(
                "Disks failing SMART",
                "Disks whose SMART overall health check says FAILED.",
                f"sum(1 - hw_smart_status_passed{{{SEL}}})",
            ),
            6,
            4,
        ),
        (
            stat(
                "NVMe critical warnings",
                "NVMe controllers with a non-zero critical warning bit field.",
                f"sum(hw_nvme_critical_warning{{{SEL}}} > bool 0)",
            ),
            6,
            4,
        ),
        (
            stat(
                "Sectors reallocated or pending",
                "Sum of reallocated, pending and uncorrectable sector counts over all selected ATA disks.",
                f'sum(hw_smart_attribute_raw{{{SEL},attribute_name=~"{HDD_SECTORS}"}})',
            ),
            6,
            4,
        ),
        (
            stat(
                "Degraded md arrays",
                "Software RAID arrays missing a member.",
                f"sum(hw_mdraid_degraded{{{SEL}}} > bool 0)",
            ),
            6,
            4,
        ),
        (
            table(
                "SMART health",
                "Overall health (1 passed, 0 failed) with model and interface.",
                [
                    (
                        "passed",
                        f"hw_smart_status_passed{{{SEL}}} * on (job, instance, device) group_left (model, interface) hw_smart_device_info{{{SEL}}}",
                    ),
                ],
            ),
            12,
            8,
        ),
        (
            table(
                "Bad sectors",
                "ATA reallocated, pending, offline-uncorrectable and reported-uncorrectable counts (raw), SCSI grown defects.",
                [
                    (
                        "count",
                        f'hw_smart_attribute_raw{{{SEL},attribute_name=~"{HDD_SECTORS}"}} or label_replace(hw_smart_scsi_grown_defects{{{SEL}}}, "attribute_name", "grown_defects", "", "")',
                    ),
                ],
                hide=("Time", "__name__", "attribute_id"),
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Disk temperature",
                "Drive temperature from SMART (every disk, NVMe included).",
                [(f"hw_smart_temperature_celsius{{{SEL}}}", "{{instance}} {{device}}")],
                "celsius",
            ),
            12,
            8,
        ),
        (
            bargauge(
                "SSD wear",
                "NVMe percentage used (100% = rated endurance reached; may exceed it) or, for SATA SSDs, 1 - the normalised wear attribute.",
                f'hw_nvme_percentage_used_ratio{{{SEL}}} or (1 - hw_smart_attribute_value{{{SEL},attribute_name=~"{SATA_WEAR}"}} / 100)',
                "{{instance}} {{device}}",
                "percentunit",
                AMBER_RED,
                1,
            ),
            6,
            8,
        ),
        (
            bargauge(
                "NVMe available spare",
                "Spare capacity left; the controller warns below its threshold (usually 10%).",
                f"hw_nvme_available_spare_ratio{{{SEL}}}",
                "{{instance}} {{device}}",
                "percentunit",
                [
                    {"color": "red", "value": None},
                    {"color": "orange", "value": 0.1},
                    {"color": "green", "value": 0.2},
                ],
                1,
            ),
            6,
            8,
        ),
        (
            table(
                "NVMe errors",
                "Media and data integrity errors, critical warning bits and unsafe shutdowns per controller.",
                [
                    ("media errors", f"hw_nvme_media_errors_total{{{SEL}}}"),
                    ("critical warning", f"hw_nvme_critical_warning{{{SEL}}}"),
                    ("unsafe shutdowns", f"hw_nvme_unsafe_shutdowns_total{{{SEL}}}"),
                ],
            ),
            12,
            6,
        ),
        (
            timeseries(
                "NVMe temperature",
                "Composite temperature of each NVMe controller.",
                [(f"hw_nvme_temperature_celsius{{{SEL}}}", "{{instance}} {{device}}")],
                "celsius",
            ),
            12,
            6,
        ),
    ]


def bmc() -> list[tuple[Json, int, int]]:
    """IPMI sensors, power and the event log."""
    return [
        (row("BMC sensors and power"), 24, 1),
        (
            table(
                "Sensors not nominal",
                "BMC sensors in warning (1) or critical (2) state.",
                [("state", f"hw_ipmi_sensor_state{{{SEL}}} > 0")],
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Power consumption",
                "DCMI power reading of the whole system and per power supply input.",
                [
                    (
                        f"hw_ipmi_dcmi_power_consumption_watts{{{SEL}}}",
                        "{{instance}} system (DCMI)",
                    ),
                    (f"hw_ipmi_power_watts{{{SEL}}}", "{{instance}} {{sensor}}"),
                ],
                "watt",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "BMC temperatures",
                "Temperature sensors of the BMC.",
                [(f"hw_ipmi_temperature_celsius{{{SEL}}}", "{{instance}} {{sensor}}")],
                "celsius",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Fans",
                "Fan speeds reported by the BMC.",
                [(f"hw_ipmi_fan_speed_rpm{{{SEL}}}", "{{instance}} {{sensor}}")],
                "rotrpm",
            ),
            8,
            8,
        ),
        (
            bargauge(
                "SEL used",
                "System event log fill level; a full SEL stops recording events.",
                f"hw_ipmi_sel_used_ratio{{{SEL}}}",
                "{{instance}}",
                "percentunit",
                AMBER_RED,
                1,
            ),
            8,
            8,
        ),
    ]


def gpus() -> list[tuple[Json, int, int]]:
    """NVIDIA GPUs: temperature, power, utilisation, memory, errors."""
    info = f"* on (job, instance, uuid) group_left (name) hw_gpu_info{{{SEL}}}"
    return [
        (row("GPUs"), 24, 1),
        (
            timeseries(
                "GPU temperature",
                "Core temperature of each GPU.",
                [(f"hw_gpu_temperature_celsius{{{SEL}}}", "{{instance}} GPU {{gpu}}")],
                "celsius",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "GPU power",
                "Power draw and enforced limit.",
                [
                    (f"hw_gpu_power_draw_watts{{{SEL}}}", "{{instance}} GPU {{gpu}} draw"),
                    (
                        f"hw_gpu_power_enforced_limit_watts{{{SEL}}}",
                        "{{instance}} GPU {{gpu}} limit",
                    ),
                ],
                "watt",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "GPU utilisation and memory",
                "Utilisation and the share of memory in use.",
                [
                    (f"hw_gpu_utilization_ratio{{{SEL}}}", "{{instance}} GPU {{gpu}} utilisation"),
                    (
                        f"hw_gpu_memory_used_bytes{{{SEL}}} / hw_gpu_memory_total_bytes{{{SEL}}}",
                        "{{instance}} GPU {{gpu}} memory",
                    ),
                ],
                "percentunit",
            ),
            8,
            8,
        ),
        (
            table(
                "GPU errors",
                "Uncorrected ECC errors (lifetime) and remapped rows pending or failed: any non-zero value needs attention.",
                [
                    (
                        "ECC uncorrected",
                        f"hw_gpu_ecc_errors_uncorrected_aggregate_total{{{SEL}}} {info}",
                    ),
                    ("rows pending", f"hw_gpu_remapped_rows_pending{{{SEL}}} {info}"),
                    ("rows failed", f"hw_gpu_remapped_rows_failure{{{SEL}}} {info}"),
                ],
            ),
            24,
            6,
        ),
    ]


def raid() -> list[tuple[Json, int, int]]:
    """Linux md arrays and EDAC memory errors."""
    return [
        (row("RAID arrays and memory"), 24, 1),
        (
            table(
                "md arrays",
                "Each array's level, missing members (degraded) and failed member disks.",
                [
                    (
                        "degraded",
                        f"hw_mdraid_degraded{{{SEL}}} * on (job, instance, device) group_left (level) hw_mdraid_info{{{SEL}}}",
                    ),
                    (
                        "failed disks",
                        f'sum without (state) (hw_mdraid_disks{{{SEL},state="failed"}}) * on (job, instance, device) group_left (level) hw_mdraid_info{{{SEL}}}',
                    ),
                ],
            ),
            12,
            8,
        ),
        (
            bargauge(
                "Resync / recovery progress",
                "Arrays not fully in sync (a resync, recovery or check in progress).",
                f"hw_mdraid_sync_completed_ratio{{{SEL}}} < 1",
                "{{instance}} {{device}}",
                "percentunit",
                [{"color": "orange", "value": None}],
                1,
            ),
            6,
            8,
        ),
        (
            table(
                "EDAC memory errors",
                "Correctable and uncorrectable memory errors per memory controller since boot.",
                [
                    ("correctable", f"hw_edac_correctable_errors_total{{{SEL}}}"),
                    ("uncorrectable", f"hw_edac_uncorrectable_errors_total{{{SEL}}}"),
                ],
            ),
            6,
            8,
        ),
    ]


def layout(items: list[tuple[Json, int, int]]) -> list[Json]:
    """Place panels left to right, wrapping at the grid width; number them."""
    panels, x, y, line = [], 0, 0, 0
    for number, (panel, width, height) in enumerate(items, 1):
        if x + width > WIDTH:
            x, y, line = 0, y + line, 0
        panels.append({"id": number, "gridPos": {"x": x, "y": y, "w": width, "h": height}, **panel})
        x, line = x + width, max(line, height)
    return panels


def variable(name: str, label: str, query: str) -> Json:
    """A multi-value query variable with All = .* (every job or instance)."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def dashboard() -> Json:
    """The whole dashboard model."""
    templating: list[Json] = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
        },
        variable("job", "Job", "label_values(hwcache_build_info, job)"),
        variable("instance", "Instance", 'label_values(hwcache_build_info{job=~"$job"}, instance)'),
    ]
    return {
        "uid": UID,
        "title": "hwcache-exporter: hardware fleet",
        "description": "Collector health, disks, BMC, GPUs and RAID from hwcache-exporter. Generated by dashboards/generate.py.",
        "tags": ["hwcache-exporter", "hardware"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "",
        "version": 1,
        "links": [],
        "annotations": {"list": []},
        "templating": {"list": templating},
        "panels": layout([*fleet(), *disks(), *bmc(), *gpus(), *raid()]),
    }


def render() -> str:
    """The dashboard as the checked-in JSON text."""
    return json.dumps(dashboard(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the JSON, or with --check fail if the checked-in file is out of date."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.is_file() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.name} is out of date: run make dashboard", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
