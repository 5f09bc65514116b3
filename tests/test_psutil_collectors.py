"""The psutil/inventory collectors against fixture roots and this machine's real psutil."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import pytest
from prometheus_client.metrics_core import Metric

from collectors.base import Collector, CollectorContext, NotApplicable
from collectors.cpu import CpuCollector, parse_cpuinfo
from collectors.disks import DisksCollector
from collectors.filesystems import FilesystemsCollector
from collectors.memory import MemoryCollector
from collectors.network import NetworkCollector
from collectors.sensors import SensorsCollector
from collectors.system import SystemCollector, parse_os_release
from tests.doubles import fake_psutil, sbattery, sfan, shwtemp
from tests.exposition import value
from tests.support import PROCFS, SYSFS


def collect(collector: Collector) -> list[Metric]:
    return list(asyncio.run(collector.collect()))


def samples(families: Sequence[Metric], name: str) -> list[dict[str, str]]:
    return [s.labels for f in families for s in f.samples if s.name == name]


@pytest.fixture
def fixture_procfs() -> Iterator[None]:
    """psutil reads procfs through a process-global; point it at the fixture and restore."""
    old = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = str(PROCFS)
    try:
        yield
    finally:
        psutil.PROCFS_PATH = old


def test_cpu_on_fixture_roots() -> None:
    text = (PROCFS / "cpuinfo").read_text()
    processors = len(re.findall(r"^processor\s*:", text, re.M))
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M).group(1).strip()  # type: ignore[union-attr]
    families = collect(CpuCollector(CollectorContext(procfs=PROCFS, sysfs=SYSFS)))
    assert value(families, "hw_cpu_logical_cores") == processors
    assert samples(families, "hw_cpu_info")[0]["model_name"] == model
    cpufreq = SYSFS / "devices/system/cpu"
    maxes = [float(p.read_text()) * 1000 for p in cpufreq.glob("cpu*/cpufreq/scaling_max_freq")]
    mins = [float(p.read_text()) * 1000 for p in cpufreq.glob("cpu*/cpufreq/scaling_min_freq")]
    assert value(families, "hw_cpu_frequency_max_hertz") == max(maxes)
    assert value(families, "hw_cpu_frequency_min_hertz") == min(mins)


def test_parse_cpuinfo_counts_cores_and_sockets() -> None:
    block = "processor : {p}\nphysical id : {s}\ncore id : {c}\nmodel name : X\n\n"
    text = "".join(block.format(p=p, s=p // 4, c=(p % 4) // 2) for p in range(8))
    first, logical, physical, sockets = parse_cpuinfo(text)
    assert (logical, physical, sockets, first["model name"]) == (8, 4, 2, "X")


def test_memory_reads_meminfo_under_procfs(fixture_procfs: None) -> None:
    meminfo = dict(
        (line.split(":")[0], int(line.split()[1]) * 1024)
        for line in (PROCFS / "meminfo").read_text().splitlines()
    )
    families = collect(MemoryCollector(CollectorContext(procfs=PROCFS)))
    assert value(families, "hw_memory_total_bytes") == meminfo["MemTotal"]
    assert value(families, "hw_memory_swap_total_bytes") == meminfo["SwapTotal"]


def test_disks_on_fixture_sysfs() -> None:
    families = collect(
        DisksCollector(CollectorContext(sysfs=SYSFS, options={"device-exclude": ""}))
    )
    for dev in (SYSFS / "block").iterdir():
        size = dev / "size"
        if size.is_file():
            assert (
                value(families, "hw_disk_size_bytes", device=dev.name)
                == int(size.read_text()) * 512
            )
    assert samples(families, "hw_disk_size_bytes")


def test_disks_not_applicable_without_sysfs_block(tmp_path: Path) -> None:
    with pytest.raises(NotApplicable):
        collect(DisksCollector(CollectorContext(sysfs=tmp_path)))


def test_filesystems_match_statvfs_on_this_machine() -> None:
    families = collect(FilesystemsCollector(CollectorContext()))
    root = [s for s in samples(families, "hw_filesystem_size_bytes") if s["mountpoint"] == "/"]
    assert root, "the root filesystem is always mounted"
    st = os.statvfs("/")
    assert value(families, "hw_filesystem_size_bytes", mountpoint="/") == st.f_blocks * st.f_frsize
    assert not [s for s in samples(families, "hw_filesystem_size_bytes") if s["fstype"] == "proc"]


def test_network_matches_psutil_on_this_machine() -> None:
    stats = psutil.net_if_stats()
    families = collect(NetworkCollector(CollectorContext(options={"device-exclude": "^$"})))
    for name, st in stats.items():
        assert value(families, "hw_network_mtu_bytes", device=name) == st.mtu
        assert value(families, "hw_network_up", device=name) == (1.0 if st.isup else 0.0)
    excluded = collect(NetworkCollector(CollectorContext(options={"device-exclude": "^lo$"})))
    assert value(excluded, "hw_network_mtu_bytes", device="lo") is None


def test_system_reads_os_release_under_rootfs(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text('ID=testos\nVERSION_ID="42"\nNAME="Test OS"\n')
    families = collect(SystemCollector(CollectorContext(rootfs=tmp_path)))
    info = samples(families, "hw_system_info")[0]
    assert (info["os_id"], info["os_version_id"], info["os_name"]) == ("testos", "42", "Test OS")
    assert value(families, "hw_system_boot_time_seconds") == psutil.boot_time()
    assert parse_os_release("# c\nPRETTY_NAME='a b'\n") == {"PRETTY_NAME": "a b"}


def test_sensors_export_psutil_readings() -> None:
    readings = fake_psutil(
        sensors_temperatures=lambda: {"coretemp": [shwtemp("Core 0", 45.0, 80.0, 100.0)]},
        sensors_fans=lambda: {"thinkpad": [sfan("", 2100)]},
        sensors_battery=lambda: sbattery(83, 3600, True),
    )
    families = collect(SensorsCollector(CollectorContext(psutil=readings)))
    assert value(families, "hw_sensors_temperature_celsius", chip="coretemp", sensor="Core 0") == 45
    assert value(families, "hw_sensors_temperature_critical_celsius", sensor="Core 0") == 100
    assert value(families, "hw_sensors_fan_speed_rpm", chip="thinkpad", sensor="sensor0") == 2100
    assert value(families, "hw_sensors_battery_charge_ratio") == 0.83
    assert value(families, "hw_sensors_battery_power_plugged") == 1


def test_sensors_not_applicable_when_none() -> None:
    empty = fake_psutil(sensors_temperatures=dict, sensors_fans=dict, sensors_battery=lambda: None)
    with pytest.raises(NotApplicable):
        collect(SensorsCollector(CollectorContext(psutil=empty)))
