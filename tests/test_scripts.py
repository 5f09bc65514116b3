"""Script collectors: Debian's textfile scripts run by the exporter against fake tools."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.exposition import samples, value
from tests.processes import kill_markers, marker_processes
from tests.support import (
    FAKES,
    FIXTURE_ARGS,
    FIXTURES,
    Exporter,
    exporter_exit,
    free_port,
    run_exporter,
    wait_for,
)

# Debian 12's prometheus-node-exporter-collectors (make test installs it).
DEBIAN = Path("/usr/share/prometheus-node-exporter-collectors")
SMARTMON = [str(DEBIAN / "smartmon.py")]
NVME = [str(DEBIAN / "nvme_metrics.sh")]
STORCLI = [str(DEBIAN / "storcli.py"), "--storcli_path", str(FAKES / "storcli")]


def write_config(tmp_path: Path, scripts: list[dict[str, Any]]) -> Path:
    """A --collector.script.config file listing ``scripts``."""
    path = tmp_path / "scripts.yml"
    path.write_text(yaml.safe_dump({"scripts": scripts}))
    return path


def script_args(config: Path, *extra: str) -> list[str]:
    """Flags for an exporter with no built-in collector and the scripts of ``config``."""
    return [*FIXTURE_ARGS, f"--collector.script.config={config}", *extra]


def stats(exporter: Exporter) -> dict[str, Any]:
    """/cache/stats as JSON."""
    status, body = exporter.get("/cache/stats")
    assert status == 200
    result: dict[str, Any] = json.loads(body)
    return result


def post(exporter: Exporter, query: str) -> int:
    """POST /cache/invalidate?query; returns the status."""
    request = urllib.request.Request(f"{exporter.base}/cache/invalidate?{query}", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def test_debian_scripts_are_served_like_collectors(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        [
            {"name": "smartmon", "command": SMARTMON, "interval": "1h", "timeout": "30s"},
            {"name": "nvme_script", "command": NVME, "interval": "15m"},
            {"name": "storcli", "command": STORCLI, "interval": "1h", "timeout": "2m"},
        ],
    )
    with run_exporter(script_args(config), tmp_path) as exporter:
        status, body = exporter.get("/metrics")
        assert status == 200
        text = body.decode()
        # smartmon.py read the real smartctl text captures (tests/fixtures/smartctl-text).
        hours = value(text, "smartmon_attr_raw_value", name="power_on_hours", device="/dev/sg2")
        assert hours == 1380
        assert value(text, "smartmon_device_info", serial_number="WS10SM2A") == 1
        assert value(text, "smartmon_device_smart_healthy", device="/dev/sdc") == 1
        # nvme_metrics.sh: 309 K in the smart-log is 36 degrees; counters keep their names.
        assert value(text, "nvme_temperature_celsius", device="nvme0n1") == 36
        assert value(text, "nvme_media_errors_total", device="nvme1n2") is not None
        # storcli.py on the real StorCLI capture of a PRAID EP420i.
        assert value(text, "megaraid_temperature", controller="0") == 52
        assert value(text, "megaraid_controller_info", model="PRAID EP420i") == 1
        for name in ("smartmon", "nvme_script", "storcli"):
            assert value(text, "hwcache_collector_success", collector=name) == 1
        assert value(text, "hwcache_collector_interval_seconds", collector="nvme_script") == 900

        entries = stats(exporter)["collectors"]
        assert {n: entries[n]["status"] for n in entries} == dict.fromkeys(
            ("smartmon", "nvme_script", "storcli"), "ok"
        )
        assert entries["storcli"]["timeout_seconds"] == 120
        status, page = exporter.get("/")
        assert status == 200 and b"nvme_script" in page and b"storcli" in page

        status, body = exporter.get("/metrics?collect[]=storcli")
        only = samples(body.decode())
        assert any(n.startswith("megaraid_") for n, _ in only)
        assert not any(n.startswith(("smartmon_", "nvme_")) for n, _ in only)
        status, body = exporter.get("/metrics?exclude[]=storcli")
        assert status == 200 and b"megaraid_" not in body and b"smartmon_" in body


async def test_fifty_concurrent_scrapes_run_the_script_once(tmp_path: Path) -> None:
    calls = tmp_path / "nvme-calls"
    config = write_config(tmp_path, [{"name": "nvme_script", "command": NVME}])
    # Room for all 50 at once (the default request limit is 40), each waiting for the refresh.
    args = script_args(config, "--web.max-requests=64", "--web.max-scrape-wait=2m")
    with run_exporter(args, tmp_path, env={"FAKE_NVME_LOG": str(calls)}) as exporter:
        assert calls.read_text().count("version") == 1  # the start-up collection
        invalidated = time.time()
        assert post(exporter, "collector=nvme_script") == 200  # expire it; next scrape runs it
        async with aiohttp.ClientSession() as session:

            async def scrape() -> str:
                async with session.get(f"{exporter.base}/metrics") as response:
                    assert response.status == 200
                    return await response.text()

            bodies = await asyncio.gather(*(scrape() for _ in range(50)))
        # Every scrape waited for data collected after the invalidation ...
        for body in bodies:
            collected = value(body, "hwcache_collector_last_success_timestamp_seconds")
            assert collected is not None and collected > invalidated
            assert value(body, "nvme_temperature_celsius", device="nvme0n1") == 36
        # ... and that was one run: nvme_metrics.sh asks `nvme version` once per run.
        assert calls.read_text().count("version") == 2
        assert stats(exporter)["collectors"]["nvme_script"]["refreshes"] == {"success": 2}


def test_hung_script_is_killed_and_its_last_data_served_stale(tmp_path: Path) -> None:
    marker = f"hung-smartmon-{tmp_path.name}"
    mode = tmp_path / "smartctl-mode"
    disks = tmp_path / "disks"
    disks.mkdir()
    shutil.copy(FIXTURES / "smartctl-text" / "sg2.sat.txt", disks)  # one disk: a quick run
    config = write_config(tmp_path, [{"name": "smartmon", "command": SMARTMON, "timeout": "15s"}])
    env = {
        "FAKE_SMARTCTL_MODE_FILE": str(mode),
        "FAKE_HANG_MARKER": marker,
        "FAKE_SMARTCTL_TEXT_FIXTURES": str(disks),
    }
    try:
        with run_exporter(script_args(config), tmp_path, env=env) as exporter:
            text = exporter.get("/metrics")[1].decode()
            assert value(text, "smartmon_device_active", device="/dev/sg2") == 1
            mode.write_text("hang")
            assert post(exporter, "collector=smartmon&refresh=now") == 202
            wait_for(lambda: marker_processes(marker), "the hung smartctl")
            entry = lambda: stats(exporter)["collectors"]["smartmon"]  # noqa: E731
            wait_for(lambda: entry()["refreshes"].get("timeout") == 1, "the timeout", 60)
            assert "timed out after 15s" in entry()["last_error"]
            wait_for(lambda: not marker_processes(marker), "the process group kill", 5)
            text = exporter.get("/metrics")[1].decode()
            assert value(text, "smartmon_device_active", device="/dev/sg2") == 1
            assert value(text, "hwcache_collector_stale", collector="smartmon") == 1
            assert value(text, "hwcache_collector_success", collector="smartmon") == 0
    finally:
        kill_markers(marker)


def start_error(tmp_path: Path, scripts: list[dict[str, Any]]) -> str:
    """Start the exporter with these scripts; it must exit 1 with one log line: return it."""
    config = write_config(tmp_path, scripts)
    listen = f"--web.listen-address=127.0.0.1:{free_port()}"
    result = exporter_exit([listen, *script_args(config)], timeout=30)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ({"name": "raid", "command": ["/nonexistent/storcli.py"]}, "script 'raid': command"),
        ({"name": "raid", "command": [str(FAKES / "smartctl_text.py")]}, "not an executable file"),
        ({"name": "raid", "command": ["no-such-tool-anywhere"]}, "not found on PATH"),
        ({"name": "smart", "command": SMARTMON}, "'smart' is a built-in collector's"),
        ({"name": "Smart-Mon", "command": SMARTMON}, "[a-z0-9_]+"),
        ({"name": "raid", "command": "storcli.py --all"}, "must be a list (argv"),
        ({"name": "raid", "command": SMARTMON, "intervall": "1h"}, "unknown key 'intervall'"),
    ],
    ids=["missing", "not-executable", "not-on-path", "shadows", "name", "string", "key"],
)
def test_bad_script_is_a_startup_error(
    tmp_path: Path, script: dict[str, Any], expected: str
) -> None:
    line = start_error(tmp_path, [script])
    assert "--collector.script.config" in line and expected in line
