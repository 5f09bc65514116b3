"""The nvme collector against the fake nvme-cli, hand-written nvme-cli JSON and the sysfs fixture."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric

from collectors.base import CollectorContext, CollectorError, NotApplicable
from collectors.nvme import NvmeCollector
from collectors.registry import load_all
from collectors.smart_families import build_families
from collectors.smart_parse import classify
from collectors.toolkit.runner import CommandRunner
from exporter.main import drop_missing_tools
from tests.exposition import key, scrape, value
from tests.processes import no_orphans_after
from tests.support import REPO, SMARTCTL, SYSFS, fake_path, run_exporter

NVME_FIXTURES = REPO / "tests" / "fixtures" / "nvme"
# The fakes run under this interpreter: much faster to start than a pyenv shim.
PATH = fake_path(str(Path(sys.executable).parent))


def smart_log(ctrl: str) -> dict[str, Any]:
    """A hand-written ``nvme smart-log -o json`` fixture."""
    doc: dict[str, Any] = json.loads((NVME_FIXTURES / f"smart-log-{ctrl}.json").read_text())
    return doc


def listed() -> dict[str, dict[str, Any]]:
    """First namespace entry of each controller in the ``nvme list -o json`` fixture."""
    found: dict[str, dict[str, Any]] = {}
    for entry in json.loads((NVME_FIXTURES / "list.json").read_text())["Devices"]:
        ctrl = re.sub(r"n\d+$", "", entry["DevicePath"].removeprefix("/dev/"))
        found.setdefault(ctrl, entry)
    return found


async def collect(
    sysfs: Path = SYSFS, timeout: float = 20.0, path: str | None = None, **env: str
) -> Sequence[Metric]:
    """Run the nvme collector once through real subprocesses."""
    runner = CommandRunner(env={**os.environ, "PATH": path or PATH, **env})
    ctx = CollectorContext(sysfs=sysfs, runner=runner, timeout=timeout)
    return await NvmeCollector(ctx).collect()


def devices(families: Sequence[Metric], name: str) -> list[str]:
    """Device labels of every sample of ``name``."""
    return [s.labels["device"] for f in families for s in f.samples if s.name == name]


@pytest.mark.parametrize("ctrl", ["nvme0", "nvme1"])
async def test_smart_log_values_match_the_json(ctrl: str) -> None:
    log, fams = smart_log(ctrl), await collect()
    dev = {"device": ctrl}
    assert value(fams, "hw_nvme_smart_log_readable", **dev) == 1
    assert value(fams, "hw_nvme_critical_warning", **dev) == log["critical_warning"]
    assert value(fams, "hw_nvme_temperature_celsius", **dev) == log["temperature"] - 273
    spare = value(fams, "hw_nvme_available_spare_ratio", **dev)
    assert spare == pytest.approx(log["avail_spare"] / 100)
    threshold = value(fams, "hw_nvme_available_spare_threshold_ratio", **dev)
    assert threshold == pytest.approx(log["spare_thresh"] / 100)
    used = value(fams, "hw_nvme_percentage_used_ratio", **dev)
    assert used == pytest.approx(log["percent_used"] / 100)
    read = value(fams, "hw_nvme_data_read_bytes_total", **dev)
    assert read == log["data_units_read"] * 1000 * 512
    written = value(fams, "hw_nvme_data_written_bytes_total", **dev)
    assert written == log["data_units_written"] * 1000 * 512
    assert value(fams, "hw_nvme_media_errors_total", **dev) == log["media_errors"]
    assert value(fams, "hw_nvme_power_cycles_total", **dev) == log["power_cycles"]
    assert value(fams, "hw_nvme_power_on_seconds", **dev) == log["power_on_hours"] * 3600
    assert value(fams, "hw_nvme_unsafe_shutdowns_total", **dev) == log["unsafe_shutdowns"]
    assert value(fams, "hw_nvme_error_log_entries_total", **dev) == log["num_err_log_entries"]
    busy = value(fams, "hw_nvme_controller_busy_seconds_total", **dev)
    assert busy == log["controller_busy_time"] * 60
    warm = value(fams, "hw_nvme_warning_temperature_seconds_total", **dev)
    assert warm == log["warning_temp_time"] * 60
    sensor = value(fams, "hw_nvme_temperature_sensor_celsius", device=ctrl, sensor="1")
    assert sensor == log["temperature_sensor_1"] - 273


async def test_info_prefers_sysfs_then_nvme_list() -> None:
    fams = await collect()
    sysfs = SYSFS / "class" / "nvme" / "nvme0"
    sys_info = {
        "model": (sysfs / "model").read_text().strip(),
        "serial": (sysfs / "serial").read_text().strip(),
        "firmware": (sysfs / "firmware_rev").read_text().strip(),
    }
    list_info = listed()["nvme1"]
    assert value(fams, "hw_nvme_info", device="nvme0", **sys_info) == 1
    assert (
        value(
            fams,
            "hw_nvme_info",
            device="nvme1",
            model=list_info["ModelNumber"],
            serial=list_info["SerialNumber"],
            firmware=list_info["Firmware"],
        )
        == 1
    )
    state = (sysfs / "state").read_text().strip()
    assert value(fams, "hw_nvme_controller_state", device="nvme0", state=state) == 1
    # Two namespaces of nvme1 are still one controller.
    assert devices(fams, "hw_nvme_info") == ["nvme0", "nvme1"]


async def test_one_failing_controller_keeps_the_other() -> None:
    fams = await collect(FAKE_NVME_MODE="garbage", FAKE_NVME_MODE_DEVICES="/dev/nvme1")
    assert value(fams, "hw_nvme_smart_log_readable", device="nvme1") == 0
    assert value(fams, "hw_nvme_critical_warning", device="nvme1") is None
    log = smart_log("nvme0")
    assert value(fams, "hw_nvme_critical_warning", device="nvme0") == log["critical_warning"]


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("garbage", "output is not JSON"),
        ("truncated", "truncated or invalid JSON"),
        ("fail", "No such file or directory"),
        ("denied", "CAP_SYS_ADMIN"),
    ],
)
async def test_every_controller_failing_is_a_clear_error(mode: str, message: str) -> None:
    with pytest.raises(CollectorError, match=message):
        await collect(FAKE_NVME_MODE=mode)


async def test_garbage_list_is_a_clear_error() -> None:
    with pytest.raises(CollectorError, match="nvme list -o json gave unusable output"):
        await collect(FAKE_NVME_LIST_MODE="garbage")


async def test_no_controllers_is_not_applicable(tmp_path: Path) -> None:
    with pytest.raises(NotApplicable, match="no NVMe controllers"):
        await collect(sysfs=tmp_path, FAKE_NVME_LIST_MODE="empty")
    with pytest.raises(NotApplicable, match="Failed to scan topology"):
        await collect(sysfs=tmp_path, FAKE_NVME_LIST_MODE="fail")


async def test_failed_list_falls_back_to_sysfs() -> None:
    fams = await collect(FAKE_NVME_LIST_MODE="fail")
    assert devices(fams, "hw_nvme_info") == ["nvme0"]
    assert value(fams, "hw_nvme_media_errors_total", device="nvme0") == 0


async def test_hang_times_out_and_leaves_no_orphans() -> None:
    marker = f"hwcache-test-{uuid.uuid4()}"
    task = asyncio.create_task(collect(timeout=1.5, FAKE_NVME_MODE="hang", FAKE_HANG_MARKER=marker))
    async with no_orphans_after(marker):
        with pytest.raises(CollectorError, match="timed out"):
            await task


async def test_missing_tool_is_not_applicable(tmp_path: Path) -> None:
    with pytest.raises(NotApplicable, match="not installed"):
        await collect(path=str(tmp_path))


def test_framework_skips_nvme_when_nvme_cli_is_absent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = load_all()
    empty = CommandRunner(env={"PATH": str(tmp_path)})
    with caplog.at_level(logging.INFO, logger="hwcache_exporter"):
        assert drop_missing_tools(["nvme"], set(), registry, empty) == []
    assert [r.getMessage() for r in caplog.records] == [
        "collector nvme skipped: nvme is not installed"
    ]


def test_end_to_end_through_the_exporter(tmp_path: Path) -> None:
    args = ["--collector.disable-defaults", "--collector.nvme", f"--path.sysfs={SYSFS}"]
    with run_exporter(args, tmp_path, env={"PATH": PATH}) as exporter:
        got = scrape(exporter)
    assert got[key("hwcache_collector_success", collector="nvme")] == 1
    for ctrl in ("nvme0", "nvme1"):
        log = smart_log(ctrl)
        assert got[key("hw_nvme_critical_warning", device=ctrl)] == log["critical_warning"]
        assert got[key("hw_nvme_percentage_used_ratio", device=ctrl)] == log["percent_used"] / 100
        assert got[key("hw_nvme_media_errors_total", device=ctrl)] == log["media_errors"]


async def test_smartctl_and_nvme_cli_export_one_set_of_names_and_labels() -> None:
    """The health log has the same families, types, help and labels whichever tool read it."""
    from_cli = await collect()
    capture = SMARTCTL / "nvme-null-SAMSUNG_MZPLL3T2HAJQ-00005-nvme1.json"
    result = classify("nvme1", 0, capture.read_bytes(), b"")
    skipped: list[str] = []
    from_smartctl = build_families([result], True, lambda item, why: skipped.append(item))
    assert skipped == []

    def shape(families: Sequence[Metric]) -> dict[str, tuple[str, str, frozenset[str]]]:
        return {
            f.name: (f.type, f.documentation, frozenset(k for s in f.samples for k in s.labels))
            for f in families
            if f.name.startswith("hw_nvme")
        }

    cli, smartctl = shape(from_cli), shape(from_smartctl)
    inventory = {"hw_nvme", "hw_nvme_controller_state", "hw_nvme_smart_log_readable"}
    assert set(cli) - set(smartctl) == inventory  # nvme-cli and sysfs only
    assert {name: cli[name] for name in smartctl} == smartctl
    assert devices(from_smartctl, "hw_nvme_critical_warning") == ["nvme1"]
    sensors = [s.value for f in from_smartctl for s in f.samples if s.labels.get("sensor")]
    doc = json.loads(capture.read_text())["nvme_smart_health_information_log"]
    assert sensors == doc["temperature_sensors"]
