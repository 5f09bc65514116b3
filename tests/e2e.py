"""The golden end-to-end check, shared by the checkout and the installed-wheel tests."""

from __future__ import annotations

import difflib
import os
import re
import subprocess

from tests.support import PROCFS, REPO, SYSFS

GOLDEN = REPO / "tests" / "golden" / "e2e-output.txt"

# Collectors fully determined by the fixture roots and fake tools. The psutil ones that read
# this machine (filesystems, network, system's boot time, sensors) have their own tests.
GOLDEN_COLLECTORS = [
    "cpu", "disks", "dmi", "edac", "gpu", "hwmon", "ipmi", "mdraid", "memory", "nvme", "smart",
]  # fmt: skip
GOLDEN_ARGS = [
    f"--path.sysfs={SYSFS}",
    f"--path.procfs={PROCFS}",
    f"--path.rootfs={REPO / 'tests' / 'fixtures' / 'rootfs'}",
    "--no-web.response-cache",
    "--collector.disable-defaults",
    *(f"--collector.{c}" for c in GOLDEN_COLLECTORS),
]

# Values that change from run to run (times, durations, the scrape's own counters).
VOLATILE = re.compile(
    r"^hwcache_(collector_(duration|last_success|last_attempt|next_refresh)|response_cache_|build_info)"
    r"|^hw_smart_device_last_read_timestamp_seconds\{"
)


def normalise(body: str) -> str:
    """Drop volatile samples (keep their HELP/TYPE lines so renames still show up)."""
    return "".join(line + "\n" for line in body.splitlines() if not VOLATILE.match(line))


def assert_golden(body: bytes, logs: str, update: bool = False) -> None:
    """The scrape equals the checked-in golden output and passes ``promtool check metrics``."""
    actual = normalise(body.decode())
    if update and os.environ.get("HWCACHE_UPDATE_GOLDEN"):
        GOLDEN.write_text(actual)
    expected = GOLDEN.read_text()
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(True), actual.splitlines(True), "golden", "actual", n=1
        )
    )
    assert not diff, f"output changed (HWCACHE_UPDATE_GOLDEN=1 to accept):\n{diff[:5000]}"
    for name in GOLDEN_COLLECTORS:
        assert f'hwcache_collector_success{{collector="{name}"}} 1.0' in actual, logs
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60
    )
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, b"", b""), lint
