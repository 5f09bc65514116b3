"""The smart collector against the fake smartctl replaying real smartctl JSON captures."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric

from collectors.base import CollectorContext, CollectorError, NotApplicable
from collectors.registry import load_all
from collectors.smart import SmartCollector
from collectors.smart_families import build_families
from collectors.smart_parse import classify
from collectors.toolkit.runner import CommandRunner
from exporter.cli import build_parser
from exporter.main import drop_missing_tools
from tests.exposition import key, scrape, value
from tests.processes import no_orphans_after
from tests.support import FAKES, SMARTCTL, fake_path, run_exporter
from tests.unreadable import assert_unreadable

FIXTURES = sorted(SMARTCTL.glob("*.json"))
NVME_75 = "nvme-7.5-TEAM_TM8FP6256G-nvme0"  # smartctl 7.5 -a: NVMe temperature thresholds
USB_SATA = "usbjmicron-Hitachi_HDS721050DLE630-sdc"  # 6.0 Gb/s drive on a 1.5 Gb/s link
# The fakes run under this interpreter: much faster to start than a pyenv shim.
PATH = fake_path(str(Path(sys.executable).parent))


def load(stem: str) -> dict[str, Any]:
    """A smartctl fixture document."""
    doc: dict[str, Any] = json.loads((SMARTCTL / f"{stem}.json").read_text())
    return doc


def runner(path: str | None = None, **env: str) -> CommandRunner:
    """A runner whose PATH finds the fake tools first."""
    return CommandRunner(env={**os.environ, "PATH": path or PATH, **env})


async def collect(
    options: dict[str, str] | None = None,
    timeout: float = 30.0,
    path: str | None = None,
    **env: str,
) -> Sequence[Metric]:
    """Run the smart collector once through real subprocesses."""
    ctx = CollectorContext(runner=runner(path, **env), options=options or {}, timeout=timeout)
    return await SmartCollector(ctx).collect()


def info(families: Sequence[Metric], device: str) -> dict[str, str]:
    """Labels of hw_smart_device_info for ``device``."""
    for family in families:
        for sample in family.samples:
            if sample.name == "hw_smart_device_info" and sample.labels["device"] == device:
                return dict(sample.labels)
    raise AssertionError(f"no hw_smart_device_info for {device}")


def scan_output(**env: str) -> list[dict[str, Any]]:
    """What the fake smartctl lists (each entry names the fixture it replays)."""
    out = subprocess.run(
        [str(FAKES / "smartctl"), "--scan-open", "--json"],
        env={**os.environ, "PATH": PATH, **env},
        capture_output=True,
        check=True,
    )
    return list(json.loads(out.stdout)["devices"])


def expected_power_on(doc: dict[str, Any]) -> float | None:
    power = doc.get("power_on_time")
    if power is None:  # e.g. SAS disks behind a MegaRAID controller print none
        return None
    return float(power["hours"] * 3600 + power.get("minutes", 0) * 60)


@pytest.fixture(scope="module")
def every_fixture() -> Sequence[Metric]:
    """One collection over every fixture file, named directly as devices."""
    devices = ",".join(path.stem for path in FIXTURES)
    options = {"devices": devices, "nvme-health": "true", "workers": "4", "dedupe": "false"}
    return asyncio.run(collect(options))


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_every_fixture_matches_its_json(every_fixture: Sequence[Metric], path: Path) -> None:
    doc, dev = json.loads(path.read_text()), path.stem
    fams = every_fixture
    assert value(fams, "hw_smart_device_readable", device=dev) == 1
    assert value(fams, "hw_smart_device_standby", device=dev) == 0
    assert value(fams, "hw_smart_exit_status", device=dev) == doc["smartctl"]["exit_status"]
    assert value(fams, "hw_smart_status_passed", device=dev) == float(doc["smart_status"]["passed"])
    assert value(fams, "hw_smart_temperature_celsius", device=dev) == doc["temperature"]["current"]
    assert value(fams, "hw_smart_power_on_seconds", device=dev) == expected_power_on(doc)
    cycles = doc.get("power_cycle_count")
    if cycles is None:
        cycles = doc.get("scsi_start_stop_cycle_counter", {}).get("accumulated_start_stop_cycles")
    assert value(fams, "hw_smart_power_cycles_total", device=dev) == cycles
    capacity = doc.get("user_capacity", {}).get("bytes", doc.get("nvme_total_capacity"))
    assert value(fams, "hw_smart_capacity_bytes", device=dev) == capacity
    assert value(fams, "hw_smart_rotation_rate_rpm", device=dev) == doc.get("rotation_rate")
    limits = doc["temperature"]
    warning = value(fams, "hw_smart_temperature_warning_celsius", device=dev)
    assert warning == limits.get("op_limit_max")
    critical = value(fams, "hw_smart_temperature_critical_celsius", device=dev)
    assert critical == limits.get("critical_limit_max")
    for kind, suffix in (("current", ""), ("max", "_max")):
        speed = doc.get("interface_speed", {}).get(kind)
        expected = speed and speed["units_per_second"] * speed["bits_per_unit"] / 8
        assert value(fams, f"hw_smart_interface_speed{suffix}_bytes", device=dev) == expected
    labels = info(fams, dev)
    assert labels["model"] == doc.get("model_name", doc.get("scsi_model_name"))
    assert labels["serial"] == doc["serial_number"]
    firmware = doc.get("firmware_version", doc.get("scsi_revision", doc.get("revision")))
    assert labels["firmware"] == firmware  # smartctl < 7.3 names SCSI firmware "revision"
    assert labels["model_family"] == doc.get("model_family", "")
    assert labels["interface"] == doc["device"]["type"]
    assert labels["protocol"] == doc["device"]["protocol"]
    for attr in doc.get("ata_smart_attributes", {}).get("table", []):
        ids = {"device": dev, "attribute_id": str(attr["id"]), "attribute_name": attr["name"]}
        assert value(fams, "hw_smart_attribute_value", **ids) == attr["value"]
        assert value(fams, "hw_smart_attribute_worst", **ids) == attr["worst"]
        assert value(fams, "hw_smart_attribute_threshold", **ids) == attr["thresh"]
        assert value(fams, "hw_smart_attribute_raw", **ids) == attr["raw"]["value"]
    if "summary" in doc.get("ata_smart_error_log", {}):  # smartctl -x logs "extended" instead
        count = doc["ata_smart_error_log"]["summary"]["count"]
        assert value(fams, "hw_smart_error_log_errors_total", device=dev) == count
    health = doc.get("nvme_smart_health_information_log")
    if health:
        nvme = "hw_nvme_"  # the nvme collector's names, whichever tool read the log
        assert value(fams, nvme + "critical_warning", device=dev) == health["critical_warning"]
        assert value(fams, nvme + "temperature_celsius", device=dev) == health["temperature"]
        reads = value(fams, nvme + "host_read_commands_total", device=dev)
        assert reads == health["host_reads"]
        busy = value(fams, nvme + "controller_busy_seconds_total", device=dev)
        assert busy == health["controller_busy_time"] * 60
        hours = value(fams, nvme + "power_on_seconds", device=dev)
        assert hours == health["power_on_hours"] * 3600
        spare = value(fams, nvme + "available_spare_ratio", device=dev)
        assert spare == pytest.approx(health["available_spare"] / 100)
        used = value(fams, nvme + "percentage_used_ratio", device=dev)
        assert used == pytest.approx(health["percentage_used"] / 100)
        written = value(fams, nvme + "data_written_bytes_total", device=dev)
        assert written == health["data_units_written"] * 512_000
        assert value(fams, nvme + "media_errors_total", device=dev) == health["media_errors"]
        shutdowns = value(fams, nvme + "unsafe_shutdowns_total", device=dev)
        assert shutdowns == health["unsafe_shutdowns"]
    for operation, counters in doc.get("scsi_error_counter_log", {}).items():
        labels = {"device": dev, "operation": operation}
        uncorrected = value(fams, "hw_smart_scsi_errors_uncorrected_total", **labels)
        assert uncorrected == counters["total_uncorrected_errors"]
        processed = value(fams, "hw_smart_scsi_processed_bytes_total", **labels)
        assert processed == pytest.approx(float(counters["gigabytes_processed"]) * 1e9)


@pytest.mark.parametrize(
    ("stem", "key"),
    [(NVME_75, "nvme_composite_temperature_threshold"), (USB_SATA, "ata_smart_data")],
)
def test_fake_prints_capabilities_only_with_the_option(stem: str, key: str) -> None:
    """As smartctl (ataprint.cpp, nvmeprint.cpp >= 7.5): NVMe thresholds and the ATA self-test
    status need --capabilities, so the collector tests below fail without it."""
    for extra, printed in (([], False), (["--capabilities"], True)):
        out = subprocess.run(
            [str(FAKES / "smartctl"), "--json", "--info", *extra, f"/dev/{stem}"],
            env={**os.environ, "PATH": PATH}, capture_output=True, check=False,
        )  # fmt: skip
        assert out.returncode == load(stem)["smartctl"]["exit_status"]
        assert (key in json.loads(out.stdout)) is printed


async def test_nvme_temperature_thresholds_are_asked_for() -> None:
    """The collector passes --capabilities and exports the composite thresholds."""
    doc = load(NVME_75)
    fams = await collect({"devices": f"/dev/{NVME_75}"})
    thresholds = doc["nvme_composite_temperature_threshold"]
    warning = value(fams, "hw_smart_temperature_warning_celsius", device=NVME_75)
    critical = value(fams, "hw_smart_temperature_critical_celsius", device=NVME_75)
    assert (warning, critical) == (thresholds["warning"], thresholds["critical"])


async def test_sata_link_speeds_as_smartctl_prints_them() -> None:
    """Bytes per second from the printed speed ("6.0 Gb/s"), current below max on a slow link."""
    fams = await collect({"devices": f"/dev/{USB_SATA}"})
    speed = load(USB_SATA)["interface_speed"]
    gbit = {kind: float(speed[kind]["string"].removesuffix(" Gb/s")) for kind in ("current", "max")}
    current = value(fams, "hw_smart_interface_speed_bytes", device=USB_SATA)
    fastest = value(fams, "hw_smart_interface_speed_max_bytes", device=USB_SATA)
    assert (current, fastest) == (gbit["current"] * 1e9 / 8, gbit["max"] * 1e9 / 8)
    assert gbit["current"] < gbit["max"]  # the enclosure's link is slower than the disk


SAS_DISK = "HITACHI_H109060SESUN600G_9"  # a 6 Gb/s SAS-2 drive


def sas_phys(port0_rate: str) -> dict[str, Any]:
    """``--log=sasphy`` sections as smartctl's scsiprint.cpp writes them (hand-written: no
    public capture of that log was found): port 0 cabled, port 1 not."""
    phy = {"identifier": 0, "attached_device_type": "expander device", "reason": "power on"}
    idle = {**phy, "attached_device_type": "no device attached"}
    return {
        "scsi_sas_port_0": {"phy_0": {**phy, "negotiated_logical_link_rate": port0_rate}},
        "scsi_sas_port_1": {
            "phy_0": {**idle, "negotiated_logical_link_rate": "phy enabled; unknown"}
        },
    }


@pytest.mark.parametrize(
    ("rate", "gbit"), [("phy enabled; 6 Gbps", 6.0), ("phy enabled; 22.5 Gbps", 22.5)]
)
async def test_sas_link_speed_from_the_phy_log(tmp_path: Path, rate: str, gbit: float) -> None:
    """The negotiated rate of the cabled phy; the fake prints it only with --log=sasphy."""
    folder = tmp_path / "smartctl"
    folder.mkdir()
    (folder / f"{SAS_DISK}.json").write_text(json.dumps({**load(SAS_DISK), **sas_phys(rate)}))
    fams = await collect({"devices": f"/dev/{SAS_DISK}"}, FAKE_SMARTCTL_FIXTURES=str(folder))
    assert value(fams, "hw_smart_interface_speed_bytes", device=SAS_DISK) == gbit * 1e9 / 8
    assert value(fams, "hw_smart_interface_speed_max_bytes", device=SAS_DISK) is None
    plain = await asyncio.to_thread(
        subprocess.run,
        [str(FAKES / "smartctl"), "--json", "--info", f"/dev/{SAS_DISK}"],
        env={**os.environ, "PATH": PATH, "FAKE_SMARTCTL_FIXTURES": str(folder)},
        capture_output=True, check=True,
    )  # fmt: skip
    assert "scsi_sas_port_0" not in json.loads(plain.stdout)


def test_fixture_set_covers_the_hard_cases() -> None:
    docs = [json.loads(p.read_text()) for p in FIXTURES]
    assert any(d["smartctl"]["exit_status"] != 0 for d in docs)
    assert {d["device"]["protocol"] for d in docs} >= {"ATA", "SCSI", "NVMe"}


async def test_scan_default_subset_through_scan_open() -> None:
    listed = scan_output()
    fams = await collect()
    protocols = {entry["protocol"] for entry in listed}
    assert "NVMe" in protocols and len(listed) >= 4
    assert any(load(e["fixture"])["smartctl"]["exit_status"] != 0 for e in listed)
    for entry in listed:
        dev, doc = entry["name"].removeprefix("/dev/"), load(entry["fixture"])
        assert value(fams, "hw_smart_exit_status", device=dev) == doc["smartctl"]["exit_status"]
        assert info(fams, dev)["serial"] == doc["serial_number"]
        temperature = value(fams, "hw_smart_temperature_celsius", device=dev)
        assert temperature == doc["temperature"]["current"]


async def test_failing_disk_is_a_metric_not_an_error() -> None:
    doc = load(scan_output()[0]["fixture"])
    fams = await collect(FAKE_SMARTCTL_MODE="failing", FAKE_SMARTCTL_MODE_DEVICES="/dev/sda")
    assert value(fams, "hw_smart_status_passed", device="sda") == 0
    assert value(fams, "hw_smart_exit_status", device="sda") == doc["smartctl"]["exit_status"] | 8
    assert value(fams, "hw_smart_device_readable", device="sda") == 1
    assert (
        value(fams, "hw_smart_temperature_celsius", device="sda") == doc["temperature"]["current"]
    )


async def test_one_unreadable_device_keeps_the_others() -> None:
    listed = scan_output()
    fams = await collect(FAKE_SMARTCTL_MODE="exit2", FAKE_SMARTCTL_MODE_DEVICES="/dev/sdb")
    assert value(fams, "hw_smart_device_readable", device="sdb") == 0
    assert value(fams, "hw_smart_exit_status", device="sdb") == 2
    assert value(fams, "hw_smart_temperature_celsius", device="sdb") is None
    for entry in listed:
        dev = entry["name"].removeprefix("/dev/")
        if dev != "sdb":
            assert value(fams, "hw_smart_device_readable", device=dev) == 1
            passed = load(entry["fixture"])["smart_status"]["passed"]
            assert value(fams, "hw_smart_status_passed", device=dev) == float(passed)


async def test_every_device_unreadable_is_a_collector_error() -> None:
    with pytest.raises(CollectorError, match=r"could not read any of 4 devices.*No such device"):
        await collect(FAKE_SMARTCTL_MODE="exit2")


async def test_permission_denied_names_the_capability() -> None:
    with pytest.raises(CollectorError, match="CAP_SYS_RAWIO"):
        await collect(FAKE_SMARTCTL_MODE="denied")


@pytest.mark.parametrize(
    ("mode", "message"), [("garbage", "not JSON"), ("truncated", "truncated or invalid JSON")]
)
async def test_bad_output_is_a_clear_error(mode: str, message: str) -> None:
    with pytest.raises(CollectorError, match=message):
        await collect(FAKE_SMARTCTL_MODE=mode)


async def test_garbage_scan_is_a_clear_error() -> None:
    with pytest.raises(CollectorError, match=r"--scan-open.*not smartctl JSON"):
        await collect(FAKE_SMARTCTL_SCAN_MODE="garbage")


async def test_no_devices_is_not_applicable() -> None:
    with pytest.raises(NotApplicable):
        await collect(FAKE_SMARTCTL_SCAN_MODE="empty")


async def test_standby_disk_is_reported_not_woken() -> None:
    entry = scan_output()[3]
    dev, doc = entry["name"].removeprefix("/dev/"), load(entry["fixture"])
    env = {"FAKE_SMARTCTL_MODE": "standby", "FAKE_SMARTCTL_MODE_DEVICES": entry["name"]}
    fams = await collect(**env)
    assert value(fams, "hw_smart_device_standby", device=dev) == 1
    assert value(fams, "hw_smart_device_readable", device=dev) == 1
    assert value(fams, "hw_smart_exit_status", device=dev) == 2
    assert value(fams, "hw_smart_temperature_celsius", device=dev) is None
    # With nocheck=never the fake disk wakes up and answers.
    fams = await collect({"nocheck": "never"}, **env)
    assert value(fams, "hw_smart_device_standby", device=dev) == 0
    assert value(fams, "hw_smart_temperature_celsius", device=dev) == doc["temperature"]["current"]


async def test_sleeping_disk_keeps_its_last_awake_values() -> None:
    entry = scan_output()[0]
    dev, doc = entry["name"].removeprefix("/dev/"), load(entry["fixture"])
    collector = SmartCollector(CollectorContext(runner=runner(), timeout=30))
    awake = await collector.collect()
    assert value(awake, "hw_smart_device_standby", device=dev) == 0
    collector.ctx.runner.env.update(  # type: ignore[union-attr]
        FAKE_SMARTCTL_MODE="standby", FAKE_SMARTCTL_MODE_DEVICES=entry["name"]
    )
    asleep = await collector.collect()
    assert value(asleep, "hw_smart_device_standby", device=dev) == 1
    assert value(asleep, "hw_smart_exit_status", device=dev) == 2
    assert (
        value(asleep, "hw_smart_temperature_celsius", device=dev) == doc["temperature"]["current"]
    )
    assert value(asleep, "hw_smart_status_passed", device=dev) == float(
        doc["smart_status"]["passed"]
    )


async def test_include_and_exclude_filter_by_label() -> None:
    fams = await collect({"device-exclude": "^nvme"})
    assert value(fams, "hw_smart_device_readable", device="nvme0") is None
    assert value(fams, "hw_smart_device_readable", device="sda") == 1
    fams = await collect({"device-include": "^sd[ab]$"})
    readable = next(f for f in fams if f.name == "hw_smart_device_readable")
    assert sorted(s.labels["device"] for s in readable.samples) == ["sda", "sdb"]


def test_bad_option_values_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """Checked once at startup, not at every refresh."""
    for flag in ("--collector.smart.device-include=(", "--collector.smart.workers=0"):
        with pytest.raises(SystemExit) as exc:
            build_parser(load_all()).parse_args([flag])
        assert exc.value.code == 2
        assert flag.split("=")[0] in capsys.readouterr().err


async def test_workers_bound_parallel_runs(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    await collect({"workers": "2"}, FAKE_SMARTCTL_LOG=str(log), FAKE_SMARTCTL_DELAY="0.4")
    events = sorted(
        (float(t), kind) for kind, t, _ in (line.split() for line in log.read_text().splitlines())
    )
    running = peak = 0
    for _, kind in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert len(events) == 8 and peak == 2


async def test_hang_times_out_and_leaves_no_orphans() -> None:
    marker = f"hwcache-test-{uuid.uuid4()}"
    env = {"FAKE_SMARTCTL_MODE": "hang", "FAKE_HANG_MARKER": marker}
    task = asyncio.create_task(collect({"devices": "sda,sdb"}, timeout=1.5, **env))
    async with no_orphans_after(marker):
        with pytest.raises(CollectorError, match="timed out"):
            await task


async def test_cancelled_collection_kills_tool_process_groups() -> None:
    marker = f"hwcache-test-{uuid.uuid4()}"
    task = asyncio.create_task(collect(FAKE_SMARTCTL_MODE="hang", FAKE_HANG_MARKER=marker))
    async with no_orphans_after(marker):
        task.cancel()  # what the framework's collector timeout does
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_missing_tool_is_not_applicable(tmp_path: Path) -> None:
    with pytest.raises(NotApplicable, match="not installed"):
        await collect(path=str(tmp_path))
    with pytest.raises(NotApplicable, match="not installed"):
        await collect({"devices": "sda"}, path=str(tmp_path))


def test_framework_skips_smart_when_smartctl_is_absent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = load_all()
    assert registry["smart"].tool == "smartctl"
    empty = CommandRunner(env={"PATH": str(tmp_path)})
    with caplog.at_level(logging.INFO, logger="hwcache_exporter"):
        assert drop_missing_tools(["smart"], set(), registry, empty) == []
    assert [r.getMessage() for r in caplog.records] == [
        "collector smart skipped: smartctl is not installed"
    ]
    with pytest.raises(SystemExit, match="smartctl"):
        drop_missing_tools(["smart"], {"smart"}, registry, empty)


async def test_nvme_health_only_without_nvme_cli(tmp_path: Path) -> None:
    # A PATH with the fake smartctl and python3 but no nvme-cli.
    (tmp_path / "smartctl").symlink_to(FAKES / "smartctl")
    (tmp_path / "python3").symlink_to(sys.executable)
    nvme_doc = load(next(e for e in scan_output() if e["protocol"] == "NVMe")["fixture"])
    used = nvme_doc["nvme_smart_health_information_log"]["percentage_used"] / 100
    alone = await collect(path=str(tmp_path))
    assert value(alone, "hw_nvme_percentage_used_ratio", device="nvme0") == pytest.approx(used)
    with_cli = await collect()
    assert value(with_cli, "hw_nvme_percentage_used_ratio", device="nvme0") is None
    assert not [f.name for f in with_cli if f.name.startswith("hw_nvme")]
    assert value(with_cli, "hw_smart_temperature_celsius", device="nvme0") is not None
    forced = await collect({"nvme-health": "true"})
    assert value(forced, "hw_nvme_percentage_used_ratio", device="nvme0") == pytest.approx(used)
    never = await collect({"nvme-health": "false"}, path=str(tmp_path))
    assert not [f.name for f in never if f.name.startswith("hw_nvme")]


def test_end_to_end_through_the_exporter(tmp_path: Path) -> None:
    args = ["--collector.disable-defaults", "--collector.smart", "--collector.smart.workers=2"]
    with run_exporter(args, tmp_path, env={"PATH": PATH}) as exporter:
        got = scrape(exporter)
    assert got[key("hwcache_collector_success", collector="smart")] == 1
    for entry in scan_output():
        dev, doc = entry["name"].removeprefix("/dev/"), load(entry["fixture"])
        assert got[key("hw_smart_status_passed", device=dev)] == float(
            doc["smart_status"]["passed"]
        )
        assert got[key("hw_smart_exit_status", device=dev)] == doc["smartctl"]["exit_status"]
        assert got[key("hw_smart_power_on_seconds", device=dev)] == expected_power_on(doc)


HUGE = 10**400  # written as a 401-digit integer literal; beyond any float
DISKS = ("HGST_HUS724020ALE640_28", "HITACHI_H109060SESUN600G_9", "SAMSUNG_MZVL21T0HCLR-00B00_24")


def with_huge_raw_value(tmp_path: Path) -> Path:
    """Copies of three fixtures; the first's Spin_Up_Time (id 3) raw value is ``HUGE``."""
    folder = tmp_path / "smartctl"
    folder.mkdir()
    for stem in DISKS:
        shutil.copy(SMARTCTL / f"{stem}.json", folder)
    doc = load(DISKS[0])
    (attr,) = [a for a in doc["ata_smart_attributes"]["table"] if a["id"] == 3]
    attr["raw"]["value"] = HUGE
    (folder / f"{DISKS[0]}.json").write_text(json.dumps(doc))
    assert "1" + "0" * 400 in (folder / f"{DISKS[0]}.json").read_text()
    return folder


async def test_value_beyond_float_range_is_skipped_and_counted(tmp_path: Path) -> None:
    folder = with_huge_raw_value(tmp_path)
    options = {"devices": ",".join(DISKS), "workers": "3"}
    ctx = CollectorContext(runner=runner(FAKE_SMARTCTL_FIXTURES=str(folder)), options=options)
    collector = SmartCollector(ctx)
    fams = await collector.collect()
    dev, doc = DISKS[0], load(DISKS[0])
    spin_up = {"device": dev, "attribute_id": "3", "attribute_name": "Spin_Up_Time"}
    assert value(fams, "hw_smart_attribute_raw", **spin_up) is None
    assert value(fams, "hw_smart_attribute_value", **spin_up) is not None
    assert value(fams, "hw_smart_device_readable", device=dev) == 1
    assert value(fams, "hw_smart_status_passed", device=dev) == doc["smart_status"]["passed"]
    for attr in doc["ata_smart_attributes"]["table"]:
        if attr["id"] != 3:
            ids = {"device": dev, "attribute_id": str(attr["id"]), "attribute_name": attr["name"]}
            assert value(fams, "hw_smart_attribute_raw", **ids) == attr["raw"]["value"]
    for other in DISKS[1:]:
        passed = load(other)["smart_status"]["passed"]
        assert value(fams, "hw_smart_status_passed", device=other) == passed
    skipped = collector.take_skipped()
    assert skipped.count == 1
    assert skipped.first == (
        f"{dev} attribute 3 Spin_Up_Time raw: an integer of 1329 bits does not fit a float",
    )


def test_odd_exit_status_in_the_json_falls_back_to_the_process_status() -> None:
    doc = load(DISKS[0])
    doc["smartctl"]["exit_status"] = HUGE
    result = classify("sda", 4, json.dumps(doc).encode(), b"")
    assert (result.readable, result.exit_status) == (True, 4)


def test_value_beyond_float_range_through_the_exporter(tmp_path: Path) -> None:
    env = {
        "PATH": PATH,
        "FAKE_SMARTCTL_FIXTURES": str(with_huge_raw_value(tmp_path)),
        "FAKE_SMARTCTL_DEVICES": "all",
    }
    args = ["--collector.disable-defaults", "--collector.smart"]
    with run_exporter(args, tmp_path, env=env) as exporter:
        assert_unreadable(exporter, "smart", 1, "attribute 3 Spin_Up_Time raw", "1329 bits")
        got = scrape(exporter)
    devices = {dict(labels)["device"] for n, labels in got if n == "hw_smart_status_passed"}
    assert len(devices) == len(DISKS)


def test_scaled_overflow_and_repeated_attribute_are_skipped() -> None:
    doc = load(DISKS[0])
    table = doc["ata_smart_attributes"]["table"]
    table.append({**table[0], "value": 1})  # the same id and name again
    doc["scsi_error_counter_log"] = {"read": {"gigabytes_processed": "1e300"}}
    skipped: list[tuple[str, str]] = []
    result = classify("sda", 0, json.dumps(doc).encode(), b"")
    fams = build_families([result], False, lambda *item: skipped.append(item))
    first = {
        "device": "sda",
        "attribute_id": str(table[0]["id"]),
        "attribute_name": table[0]["name"],
    }
    assert value(fams, "hw_smart_attribute_value", **first) == table[0]["value"]
    processed = value(fams, "hw_smart_scsi_processed_bytes_total", device="sda", operation="read")
    assert processed is None
    assert skipped == [
        (
            f"sda attribute {first['attribute_id']} {first['attribute_name']}",
            "listed twice (the first one is kept)",
        ),
        ("sda hw_smart_scsi_processed_bytes_total read", "inf is not a finite number"),
    ]
    assert len([s for f in fams for s in f.samples if s.labels == first]) == 4
