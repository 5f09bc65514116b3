"""The gpu collector on the fake nvidia-smi replaying real captures."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from collectors.base import CollectorContext, CollectorError, NotApplicable
from collectors.gpu import GpuCollector
from collectors.registry import load_all
from collectors.toolkit.runner import CommandRunner
from exporter.main import drop_missing_tools
from tests.exposition import Samples, key, samples, scrape
from tests.processes import assert_gone
from tests.support import FAKES, NVIDIA_SMI, fake_path, run_exporter

CAPTURES = sorted(p.stem for p in NVIDIA_SMI.glob("*.txt"))
MIB, MHZ = 1024 * 1024, 1e6
# query-gpu field -> (metric, scale to base units); checked against every capture.
EXPECTED = {
    "temperature.gpu": ("hw_gpu_temperature_celsius", 1.0),
    "temperature.memory": ("hw_gpu_memory_temperature_celsius", 1.0),
    "power.draw": ("hw_gpu_power_draw_watts", 1.0),
    "power.limit": ("hw_gpu_power_limit_watts", 1.0),
    "memory.total": ("hw_gpu_memory_total_bytes", MIB),
    "memory.used": ("hw_gpu_memory_used_bytes", MIB),
    "utilization.gpu": ("hw_gpu_utilization_ratio", 0.01),
    "utilization.memory": ("hw_gpu_memory_utilization_ratio", 0.01),
    "ecc.errors.corrected.volatile.total": ("hw_gpu_ecc_errors_corrected", 1.0),
    "ecc.errors.uncorrected.volatile.total": ("hw_gpu_ecc_errors_uncorrected", 1.0),
    "ecc.errors.corrected.aggregate.total": ("hw_gpu_ecc_errors_corrected_aggregate_total", 1.0),
    "fan.speed": ("hw_gpu_fan_speed_ratio", 0.01),
    "clocks.current.sm": ("hw_gpu_clock_sm_hertz", MHZ),
    "clocks.current.memory": ("hw_gpu_clock_memory_hertz", MHZ),
    "pcie.link.width.current": ("hw_gpu_pcie_link_width", 1.0),
}


def capture_rows(stem: str, phase: str) -> list[dict[str, str]]:
    """The capture's query-gpu csv (with units) as one dict per GPU."""
    lines = (NVIDIA_SMI / f"{stem}.txt").read_text().splitlines()
    start = lines.index(f"# {phase} :: query-gpu (csv, what the exporter parses)")
    assert lines[start + 1].startswith("# $ nvidia-smi --query-gpu=")
    header = [h.split(" [")[0] for h in lines[start + 3].split(", ")]
    rows = []
    for line in lines[start + 4 :]:
        if not line.strip():
            break
        rows.append(dict(zip(header, line.split(", "), strict=True)))
    return rows


def number(value: str) -> float | None:
    """A capture value without its unit; None for nvidia-smi's not-available markers."""
    if value in ("", "N/A") or value.startswith("["):
        return None
    return float(value.split(" ")[0])


def runner(**env: str) -> CommandRunner:
    return CommandRunner(env={**os.environ, "PATH": fake_path(), **env})


async def collect(timeout: float = 10.0, **env: str) -> Samples:
    ctx = CollectorContext(runner=runner(**env), timeout=timeout)
    return samples(await GpuCollector(ctx).collect())


def check_against_capture(
    got: Samples, stem: str, phase: str, skip: frozenset[str] = frozenset()
) -> tuple[int, int]:
    """Assert exported values equal the capture; return (values checked, absent checked)."""
    checked = absent = 0
    for row in capture_rows(stem, phase):
        labels = {"gpu": row["index"], "uuid": row["uuid"]}
        info = {
            **labels,
            "name": row["name"],
            "driver_version": row["driver_version"],
            "pci_bus_id": row["pci.bus_id"],
        }
        assert got[key("hw_gpu_info", **info)] == 1.0
        for field, (metric, scale) in EXPECTED.items():
            if field in skip:
                continue
            value = number(row[field])
            if value is None:
                assert key(metric, **labels) not in got, f"{field}={row[field]!r} must be absent"
                absent += 1
            else:
                assert got[key(metric, **labels)] == pytest.approx(value * scale), field
                checked += 1
    return checked, absent


@pytest.mark.parametrize("phase", ["idle", "load"])
@pytest.mark.parametrize("stem", CAPTURES)
async def test_every_capture_exports_its_values(stem: str, phase: str) -> None:
    got = await collect(FAKE_NVIDIA_SMI_CAPTURE=stem, FAKE_NVIDIA_SMI_PHASE=phase)
    checked, _ = check_against_capture(got, stem, phase)
    assert checked >= 10


async def test_not_available_values_are_absent_not_zero() -> None:
    totals = [0, 0]
    for stem in CAPTURES:
        got = await collect(FAKE_NVIDIA_SMI_CAPTURE=stem)
        for i, count in enumerate(check_against_capture(got, stem, "idle")):
            totals[i] += count
    assert totals[1] >= 3  # fan.speed [N/A] on data-center GPUs, ECC on GeForce, ...
    assert len(CAPTURES) == 3


def test_fake_answers_aliases_missing_and_unknown_fields_like_nvidia_smi() -> None:
    env = {**os.environ, "FAKE_NVIDIA_SMI_CAPTURE": CAPTURES[0]}
    fake = str(FAKES / "nvidia-smi")
    query = "--query-gpu=clocks.sm,clocks.current.sm,gpu_name,name,retired_pages.sbe"
    out = subprocess.run(
        [fake, query, "--format=csv,noheader,nounits"], env=env, capture_output=True, text=True
    )
    sm, current_sm, gpu_name, name, retired = out.stdout.strip().split(", ")
    assert (sm, gpu_name) == (current_sm, name) and out.returncode == 0
    row = capture_rows(CAPTURES[0], "idle")[0]
    assert f"{current_sm} MHz" == row["clocks.current.sm"]
    assert retired == row.get("retired_pages.single_bit_ecc.count", "[N/A]")
    bad = subprocess.run([fake, "--query-gpu=bogus", "--format=csv"], env=env, capture_output=True)
    assert bad.returncode == 2 and b'Field "bogus" is not a valid field' in bad.stdout


async def test_fields_an_older_driver_rejects_are_dropped() -> None:
    env = {"FAKE_NVIDIA_SMI_INVALID_FIELDS": "temperature.memory,remapped_rows.failure"}
    ctx = CollectorContext(runner=runner(**env), timeout=10)
    collector = GpuCollector(ctx)
    got = samples(await collector.collect())
    assert collector.unsupported == {"temperature.memory", "remapped_rows.failure"}
    assert not [k for k in got if k[0] == "hw_gpu_memory_temperature_celsius"]
    h100 = next(s for s in CAPTURES if "h100" in s)
    checked, _ = check_against_capture(got, h100, "idle", frozenset({"temperature.memory"}))
    assert checked >= 10


@pytest.mark.parametrize("mode", ["garbage", "truncated"])
async def test_garbage_output_is_a_clear_error(mode: str) -> None:
    with pytest.raises(CollectorError, match=r"unexpected nvidia-smi output at line 1"):
        await collect(FAKE_NVIDIA_SMI_MODE=mode)


async def test_permission_denied_names_device_access() -> None:
    with pytest.raises(CollectorError, match="insufficient permissions") as err:
        await collect(FAKE_NVIDIA_SMI_MODE="denied")
    assert "/dev/nvidiactl" in str(err.value)


async def test_driver_not_loaded_is_an_error() -> None:
    with pytest.raises(CollectorError, match="cannot communicate with the NVIDIA driver"):
        await collect(FAKE_NVIDIA_SMI_MODE="exit9")


async def test_no_gpu_is_not_applicable() -> None:
    with pytest.raises(NotApplicable, match="no NVIDIA GPU"):
        await collect(FAKE_NVIDIA_SMI_MODE="nodevices")


async def test_hang_times_out_and_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    with pytest.raises(CollectorError, match="timed out"):
        await collect(2.5, FAKE_NVIDIA_SMI_MODE="hang", FAKE_NVIDIA_SMI_PIDFILE=str(pidfile))
    assert_gone(pidfile)


async def test_missing_tool_is_not_applicable_and_skipped(tmp_path: Path) -> None:
    empty = CommandRunner(env={"PATH": str(tmp_path)})
    with pytest.raises(NotApplicable, match="not installed"):
        await GpuCollector(CollectorContext(runner=empty)).collect()
    registry = load_all()
    assert drop_missing_tools(["gpu"], set(), registry, empty) == []
    with pytest.raises(SystemExit, match="nvidia-smi"):
        drop_missing_tools(["gpu"], {"gpu"}, registry, empty)


def test_end_to_end_through_the_exporter(tmp_path: Path) -> None:
    stem = next(s for s in CAPTURES if "l40s" in s)
    env = {"FAKE_NVIDIA_SMI_CAPTURE": stem, "FAKE_NVIDIA_SMI_PHASE": "load"}
    with run_exporter(["--collector.disable-defaults", "--collector.gpu"], tmp_path, env) as exp:
        got = scrape(exp)
    assert got[key("hwcache_collector_success", collector="gpu")] == 1.0
    checked, _ = check_against_capture(got, stem, "load")
    assert checked >= 10


def test_end_to_end_hang_reports_timeout_and_leaves_no_orphans(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    env = {"FAKE_NVIDIA_SMI_MODE": "hang", "FAKE_NVIDIA_SMI_PIDFILE": str(pidfile)}
    args = ["--collector.disable-defaults", "--collector.gpu", "--collector.gpu.timeout=2s"]
    with run_exporter(args, tmp_path, env) as exp:
        stats = json.loads(exp.get("/cache/stats")[1])["collectors"]["gpu"]
        assert stats["status"] == "error" and "timed out" in stats["last_error"], stats
        assert_gone(pidfile)
        assert scrape(exp)[key("hwcache_collector_success", collector="gpu")] == 0.0
