"""Hardware-event hooks (contrib/) and ``hwcache-exporter invalidate`` against a real exporter."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from tests.support import FIXTURE_ARGS, REPO, Exporter, free_port, run_exporter, wait_for

CONTRIB = REPO / "contrib"
INSTALLED = "/usr/local/libexec/hwcache-exporter/"  # where the README installs the hooks
COLLECTORS = ("disks", "smart", "nvme", "mdraid", "dmi")
RATE_LIMITED = 75


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Exporter]:
    """An exporter running the collectors the hooks concern, plus dmi (never theirs)."""
    args = [*FIXTURE_ARGS, *(f"--collector.{name}" for name in COLLECTORS)]
    with run_exporter(args, tmp_path) as running:
        yield running


def client(tmp_path: Path) -> Path:
    """The ``hwcache-exporter`` command the hooks call (this checkout's, by $HWCACHE_EXPORTER)."""
    path = tmp_path / "hwcache-exporter"
    path.write_text(f'#!/bin/sh\nexec {sys.executable} -m exporter "$@"\n')
    path.chmod(0o755)
    return path


def hook_env(exporter: Exporter, tmp_path: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """A caller's minimal environment plus what it sets for the hook."""
    return {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HWCACHE_EXPORTER": str(client(tmp_path)),
        "HWCACHE_EXPORTER_URL": exporter.base,
        **extra,
    }


def run_hook(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a hook as its caller does; returns the finished process."""
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd="/")


def refreshes(exporter: Exporter) -> dict[str, int]:
    """Finished refreshes per collector, from /cache/stats."""
    status, body = exporter.get("/cache/stats")
    assert status == 200
    entries: dict[str, Any] = json.loads(body)["collectors"]
    return {name: sum(e["refreshes"].values()) for name, e in entries.items()}


def settled(exporter: Exporter) -> bool:
    """No refresh in flight."""
    entries = json.loads(exporter.get("/cache/stats")[1])["collectors"]
    return not any(e["refreshing"] for e in entries.values())


def refreshed(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Collectors whose refresh count changed, and by how much."""
    return {n: after[n] - before[n] for n in after if after[n] != before[n]}


def udev_rules() -> list[tuple[dict[str, str], str]]:
    """(conditions, RUN program) of each rule in contrib/udev."""
    rules = []
    for line in (CONTRIB / "udev" / "90-hwcache-exporter.rules").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        keys = dict(re.findall(r'([A-Z]+(?:\{[A-Z_]+\})?)=="([^"]*)"', line))
        run = re.search(r'RUN\+="([^"]*)"', line)
        assert run is not None, line
        rules.append((keys, run.group(1).replace(INSTALLED, f"{CONTRIB}/udev/")))
    return rules


def udev_run(event: Mapping[str, str]) -> list[str]:
    """The RUN programs udev would start for ``event`` (ACTION, SUBSYSTEM, ENV{...})."""
    matched = []
    for keys, program in udev_rules():
        values = {k.removeprefix("ENV{").removesuffix("}"): v for k, v in keys.items()}
        if all(event.get(k, "") in v.split("|") for k, v in values.items()):
            matched.append(program)
    return matched


DISK_ADDED = {"ACTION": "add", "SUBSYSTEM": "block", "DEVTYPE": "disk", "DEVNAME": "/dev/sdq"}


def test_udev_rule_expires_disks_smart_and_nvme_once_per_burst(
    exporter: Exporter, tmp_path: Path
) -> None:
    assert udev_run({**DISK_ADDED, "DEVTYPE": "partition"}) == []
    assert udev_run({**DISK_ADDED, "ACTION": "change"}) == []
    programs = udev_run(DISK_ADDED)
    assert len(programs) == 1
    before = refreshes(exporter)
    done = run_hook(programs, hook_env(exporter, tmp_path, DISK_ADDED))
    assert done.returncode == 0, done.stderr
    assert refreshes(exporter) == before  # refresh=next: the next scrape collects them
    # More disks of the same enclosure, an NVMe controller: one refresh for the whole burst.
    nvme_gone = {"ACTION": "remove", "SUBSYSTEM": "nvme", "DEVNAME": "/dev/nvme1"}
    for event in ({**DISK_ADDED, "DEVNAME": "/dev/sdr"}, nvme_gone):
        (program,) = udev_run(event)
        late = run_hook([program], hook_env(exporter, tmp_path, event))
        assert late.returncode == RATE_LIMITED, late.stderr
        assert "retry after" in late.stderr
    assert exporter.get("/metrics")[0] == 200
    wait_for(lambda: settled(exporter), "the refreshes")
    assert refreshed(before, refreshes(exporter)) == {"disks": 1, "smart": 1, "nvme": 1}


SMARTD_WARNING = {
    "SMARTD_DEVICE": "/dev/sda",
    "SMARTD_DEVICETYPE": "sat",
    "SMARTD_DEVICESTRING": "/dev/sda [SAT]",
    "SMARTD_DEVICEINFO": "HGST HUS724020ALE640, S/N:PK1131P2GA7VDJ, 2.00 TB",
    "SMARTD_FAILTYPE": "CurrentPendingSector",
    "SMARTD_MESSAGE": "Device: /dev/sda [SAT], 8 Currently unreadable (pending) sectors",
    "SMARTD_ADDRESS": "root",
    "SMARTD_TFIRST": "Wed Dec  2 05:00:00 2026 UTC",
    "SMARTD_TFIRSTEPOCH": "1796187600",
    "SMARTD_PREVCNT": "0",
    "SMARTD_NEXTDAYS": "1",
}


def test_smartd_warning_refreshes_smart_now(exporter: Exporter, tmp_path: Path) -> None:
    hook = [str(CONTRIB / "smartd" / "smartd-hook")]
    before = refreshes(exporter)
    test = run_hook(
        hook, hook_env(exporter, tmp_path, {**SMARTD_WARNING, "SMARTD_FAILTYPE": "EmailTest"})
    )
    assert test.returncode == 0 and refreshes(exporter) == before
    done = run_hook(hook, hook_env(exporter, tmp_path, SMARTD_WARNING))
    assert done.returncode == 0, done.stderr
    wait_for(lambda: refreshes(exporter)["smart"] > before["smart"], "the smart refresh")
    # smartd repeats the warning for the other disks: no second run of smartctl.
    again = run_hook(
        hook, hook_env(exporter, tmp_path, {**SMARTD_WARNING, "SMARTD_DEVICE": "/dev/sdb"})
    )
    assert again.returncode == RATE_LIMITED, again.stderr
    wait_for(lambda: settled(exporter), "the refresh")
    assert refreshed(before, refreshes(exporter)) == {"smart": 1}


def test_mdadm_event_refreshes_mdraid_now(exporter: Exporter, tmp_path: Path) -> None:
    hook = str(CONTRIB / "mdadm" / "mdadm-hook")
    env = hook_env(exporter, tmp_path, {})
    assert run_hook([hook], env).returncode == 2  # not called the way mdadm calls it
    before = refreshes(exporter)
    assert run_hook([hook, "TestMessage", "/dev/md0"], env).returncode == 0
    assert refreshes(exporter) == before
    done = run_hook([hook, "Fail", "/dev/md0", "/dev/sdb1"], env)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: refreshes(exporter)["mdraid"] > before["mdraid"], "the mdraid refresh")
    for event in (["DegradedArray", "/dev/md0"], ["RebuildStarted", "/dev/md0"]):
        assert run_hook([hook, *event], env).returncode == RATE_LIMITED
    wait_for(lambda: settled(exporter), "the refresh")
    assert refreshed(before, refreshes(exporter)) == {"mdraid": 1}


def invalidate(
    *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``hwcache-exporter invalidate`` (the console script's entry point)."""
    return subprocess.run(
        [sys.executable, "-m", "exporter", "invalidate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def test_client_exit_codes(exporter: Exporter) -> None:
    url = f"--url={exporter.base}"
    assert invalidate(url).returncode == 2  # no --collector
    assert invalidate(url, "--collector=smart", "--refresh=later").returncode == 2
    unknown = invalidate(url, "--collector=ipmi")
    assert unknown.returncode == 1 and "unknown or disabled collector 'ipmi'" in unknown.stderr
    closed = invalidate(f"--url=http://127.0.0.1:{free_port()}", "--collector=smart")
    assert closed.returncode == 1 and "cannot reach" in closed.stderr
    done = invalidate(url, "--collector=dmi", "--refresh=now")
    assert done.returncode == 0 and "invalidated dmi (refresh now)" in done.stdout
    limited = invalidate("--collector=dmi", env={"HWCACHE_EXPORTER_URL": exporter.base})
    assert limited.returncode == RATE_LIMITED
    assert re.search(r"rate limited: .*; retry after \d+s", limited.stderr), limited.stderr
    skipped = invalidate(url, "--collector=ipmi", "--if-enabled")
    assert skipped.returncode == 0 and "nothing to invalidate" in skipped.stdout


def test_client_sends_credentials_from_a_file(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"s3cret:pw", bcrypt.gensalt(rounds=4)).decode()
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  hooks: {hashed}\n")
    creds = tmp_path / "credentials"
    args = [*FIXTURE_ARGS, "--collector.dmi", f"--web.config.file={web_config}"]
    with run_exporter(args, tmp_path, wait_ready=False) as running:
        url = f"--url={running.base}"
        denied = invalidate(url, "--collector=dmi")
        assert denied.returncode == 1 and "answered 401" in denied.stderr
        creds.write_text("hooks:wrong\n")
        assert invalidate(url, "--collector=dmi", f"--credentials-file={creds}").returncode == 1
        creds.write_text("no-colon\n")
        bad = invalidate(url, "--collector=dmi", f"--credentials-file={creds}")
        assert bad.returncode == 1 and "expected one line user:password" in bad.stderr
        creds.write_text("hooks:s3cret:pw\n")  # the password may hold a colon
        env = {"HWCACHE_EXPORTER_CREDENTIALS_FILE": str(creds)}
        done = invalidate(url, "--collector=dmi", "--if-enabled", env=env)
        assert done.returncode == 0, done.stderr
