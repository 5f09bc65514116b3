"""``promtool check metrics`` lints the full scrape of every collector that runs here."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import Collector

from tests.prom import TEXT_ACCEPT, fakeable_collector_args, promtool
from tests.support import FIXTURES, PROCFS, SYSFS, run_exporter

# promlint findings we accept, each justified in docs/ecosystem.md; none today.
ALLOWED_WARNINGS: frozenset[str] = frozenset()
OPENMETRICS_ACCEPT = "application/openmetrics-text;version=1.0.0"
# Real captures (tests/fixtures/README.md): three disks behind one MegaRAID controller (SAS,
# two SATA), a disk behind a JMicron USB bridge, an NVMe drive; device label each one gets.
MIXED_DISKS = {
    "megaraid_2-null-TOSHIBA_MG08SCA16TEY-0": "bus_0_megaraid_2",
    "sat+megaraid_0-null-MZ7KH480HAHQ0D3-0": "bus_0_megaraid_0",
    "sat+megaraid_1-null-HFS1T9G3H2X069N-0": "bus_0_megaraid_1",
    "usbjmicron-Hitachi_HDS721050DLE630-sdc": "sda",
    "SAMSUNG_MZVL21T0HCLR-00B00_24": "nvme0",
}
# Series every readable disk has, whatever its kind.
PER_DISK = (
    "hw_smart_device_readable", "hw_smart_device_info", "hw_smart_device_paths",
    "hw_smart_status_passed", "hw_smart_temperature_celsius", "hw_smart_exit_status",
)  # fmt: skip


def lint(body: bytes) -> tuple[int, set[str]]:
    """promtool's exit status and the set of problem lines it printed."""
    result = promtool("check", "metrics", stdin=body)
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, {line.strip() for line in lines if line.strip()}


def samples(families: list[Metric]) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    """Sample names and label sets (values change between two scrapes: freshness ages)."""
    return {(s.name, frozenset(s.labels.items())) for f in families for s in f.samples}


def test_full_scrape_passes_promtool(tmp_path: Path) -> None:
    """All runnable collectors on fixture roots with fake tools: no promlint findings."""
    flags, names = fakeable_collector_args()
    args = [
        f"--path.sysfs={SYSFS}",
        f"--path.procfs={PROCFS}",
        *flags,
        "--collector.synthetic.samples=50",
    ]
    with run_exporter(args, tmp_path) as exporter:
        status, text = exporter.get("/metrics", {"Accept": TEXT_ACCEPT})
        om_status, openmetrics = exporter.get("/metrics", {"Accept": OPENMETRICS_ACCEPT})
    assert status == om_status == 200

    returncode, problems = lint(text)
    assert problems == ALLOWED_WARNINGS
    assert returncode == (3 if ALLOWED_WARNINGS else 0)

    families = list(parse_text(text.decode()))
    interval = next(f for f in families if f.name == "hwcache_collector_interval_seconds")
    assert {s.labels["collector"] for s in interval.samples} == set(names)
    # The same scrape as OpenMetrics parses too (one # EOF, counters with _total).
    assert openmetrics.endswith(b"# EOF\n") and openmetrics.count(b"# EOF") == 1
    om_families = list(parse_openmetrics(openmetrics.decode()))
    assert samples(om_families) == samples(families)


def test_full_scrape_with_raid_usb_and_nvme_disks_passes_promtool(tmp_path: Path) -> None:
    """One run reads disks behind a RAID controller, a USB bridge and NVMe: lint-clean, and
    every disk has its own series under its documented label (docs/collectors/smart.md)."""
    flags, _ = fakeable_collector_args()
    args = [
        f"--path.sysfs={SYSFS}",
        f"--path.procfs={PROCFS}",
        f"--path.rootfs={FIXTURES / 'rootfs'}",
        *flags,
        # smartctl does not know this bridge (the fake says "Unknown USB bridge") until told.
        "--collector.smart.device-type-override=/dev/sda;usbjmicron",
    ]
    env = {"FAKE_SMARTCTL_DEVICES": ",".join(MIXED_DISKS), "FAKE_SMARTCTL_USB_BRIDGE": "/dev/sda"}
    with run_exporter(args, tmp_path, env=env) as exporter:
        status, text = exporter.get("/metrics", {"Accept": TEXT_ACCEPT})
    assert status == 200
    assert lint(text) == (0, set())

    samples = [s for f in parse_text(text.decode()) for s in f.samples]
    value = {
        (s.name, s.labels.get("device")): s.value for s in samples if "collector" not in s.labels
    }
    labels = set(MIXED_DISKS.values())
    for name in PER_DISK:
        assert {d for n, d in value if n == name} >= labels, name
    assert all(value[("hw_smart_device_readable", d)] == 1 for d in labels)
    assert all(value[("hw_smart_device_paths", d)] == 1 for d in labels)
    info = {s.labels["device"]: s.labels for s in samples if s.name == "hw_smart_device_info"}
    assert {d: info[d]["interface"] for d in labels} == {
        "bus_0_megaraid_2": "megaraid,2",
        "bus_0_megaraid_0": "sat+megaraid,0",
        "bus_0_megaraid_1": "sat+megaraid,1",
        "sda": "usbjmicron",
        "nvme0": "nvme",
    }
    assert len({info[d]["model"] for d in labels}) == len(labels)
    # The USB disk's capture is of a failing drive: read, and reported as failing.
    assert value[("hw_smart_status_passed", "sda")] == 0
    success = {
        s.labels["collector"]: s.value for s in samples if s.name == "hwcache_collector_success"
    }
    assert success["smart"] == 1


class _Bad(Collector):
    """A collector breaking the conventions promlint checks."""

    def collect(self) -> list[Metric]:
        return [
            GaugeMetricFamily("hw_bad_total", "Gauge with a counter suffix.", value=1),
            CounterMetricFamily("hw_fooBar", "camelCase counter.", value=1),
        ]


def test_lint_reports_convention_breaks() -> None:
    """The harness sees promlint problems (so the test above can fail)."""
    registry = CollectorRegistry()
    registry.register(_Bad())
    returncode, problems = lint(generate_latest(registry))
    assert returncode == 3
    assert 'hw_bad_total non-counter metrics should not have "_total" suffix' in problems
    assert "hw_fooBar_total metric names should be written in 'snake_case' not 'camelCase'" in (
        problems
    )


def test_lint_reports_unparsable_exposition() -> None:
    """A malformed body is an error, not a silent pass."""
    returncode, problems = lint(b'hw_x{device="a" 1\n')
    assert returncode == 1
    assert any("error while linting" in p for p in problems)
