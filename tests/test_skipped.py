"""Default collectors skipped for a missing tool: listed in /cache/stats and on the landing page."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import PROCFS, SYSFS, run_exporter


def test_skipped_collectors_are_reported(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()  # an empty PATH: smartctl, nvme, ipmitool and nvidia-smi are all missing
    defaults = [f"--path.sysfs={SYSFS}", f"--path.procfs={PROCFS}"]
    with run_exporter(defaults, tmp_path, env={"PATH": str(tools)}) as exporter:
        status, raw = exporter.get("/cache/stats")
        stats = json.loads(raw)
        status_page, page = exporter.get("/")
    assert status == 200 and status_page == 200
    assert set(stats["skipped"]) == {"gpu", "ipmi", "nvme", "smart"}
    assert "smartctl is not installed" in stats["skipped"]["smart"]
    assert "smart" not in stats["collectors"]
    assert 'id="collector-smart"' in page.decode() and "skipped" in page.decode()
