"""The systemd unit: systemd's own security analysis and verifier, sysusers, env template."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from collectors.registry import load_all
from exporter.cli import build_parser
from tests.support import FIXTURE_ARGS, REPO, fake_path, free_port

SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "hwcache-exporter.service"
ENV_TEMPLATE = SYSTEMD / "hwcache-exporter.env"
SYSUSERS = SYSTEMD / "sysusers.d" / "hwcache-exporter.conf"
DROP_INS = SYSTEMD / "drop-ins"
MAX_EXPOSURE = 2.5
ENV_GENERATOR = Path(
    "/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator"
)

# Every protection systemd-analyze still counts against the unit, and why it stays so.
ACCEPTED_EXPOSURE = {
    "PrivateNetwork": "it serves HTTP on the host's network",
    "RestrictAddressFamilies_AF_INET_INET6": "it listens on TCP",
    "RestrictAddressFamilies_AF_UNIX": "sd_notify and journald sockets",
    "IPAddressDeny": "an allow list is site-specific (commented example in the unit)",
    "PrivateUsers": "a user namespace would void CAP_SYS_RAWIO and the disk group on devices",
    "PrivateDevices": "smartctl/nvme/ipmitool open /dev/sd*, /dev/nvme*, /dev/ipmi0",
    "DeviceAllow": "the device allow list for those (disks read-only)",
    "CapabilityBoundingSet_CAP_SYS_RAWIO": "SG_IO ATA/SCSI pass-through of smartctl",
    "AmbientCapabilities": "so the smartctl child process gets CAP_SYS_RAWIO",
    "SupplementaryGroups": "disk group: /dev/sd* are root:disk 0660",
    "ProtectHome": "read-only, so the filesystems collector sees the real /home",
    "ProcSubset": "collectors read /proc/cpuinfo, /proc/meminfo, /proc/mdstat",
    "RootDirectoryOrRootImage": "it reads the host's /sys, /proc and tools",
}


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False
    )


def exposure(unit: Path) -> float:
    """The overall exposure level systemd-analyze security prints (0 = best, 10 = worst)."""
    result = analyze("security", "--offline=yes", str(unit))
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert found, result.stdout + result.stderr
    return float(found.group(1))


def service_settings(unit: Path) -> dict[str, list[str]]:
    """[Service] assignments, keeping repeated keys (DeviceAllow=, SystemCallFilter=)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_exposure_is_within_target() -> None:
    assert exposure(UNIT) <= MAX_EXPOSURE
    # --threshold is in tenths: the exit status agrees with the parsed number.
    assert analyze("security", "--offline=yes", "--threshold=25", str(UNIT)).returncode == 0


def test_exposure_check_fails_on_an_unhardened_unit(tmp_path: Path) -> None:
    bare = tmp_path / "hwcache-exporter.service"
    bare.write_text("[Service]\nType=notify\nExecStart=/usr/local/bin/hwcache-exporter\n")
    assert exposure(bare) > MAX_EXPOSURE
    assert analyze("security", "--offline=yes", "--threshold=25", str(bare)).returncode != 0


def test_only_the_accepted_protections_are_missing() -> None:
    result = analyze("security", "--offline=yes", "--json=short", str(UNIT))
    checks = json.loads(result.stdout)
    missing = {c["json_field"] for c in checks if not c["set"] and c["exposure"]}
    assert missing == set(ACCEPTED_EXPOSURE)
    passed = {c["json_field"] for c in checks if c["set"]}
    for required in (
        "MemoryDenyWriteExecute",
        "NoNewPrivileges",
        "ProtectSystem",
        "PrivateTmp",
        "CapabilityBoundingSet_CAP_SYS_ADMIN",
        "SystemCallFilter_privileged",
        "SystemCallArchitectures",
        "RestrictNamespaces_user",
        "RestrictAddressFamilies_AF_NETLINK",
        "UMask",
    ):
        assert required in passed, required


def with_drop_in(name: str, tmp_path: Path) -> Path:
    """A copy of the unit with one shipped drop-in beside it (read by --offline analysis)."""
    unit = tmp_path / UNIT.name
    shutil.copy(UNIT, unit)
    drop_in_dir = tmp_path / f"{UNIT.name}.d"
    drop_in_dir.mkdir()
    shutil.copy(DROP_INS / name, drop_in_dir / name)
    return unit


def capability_checks(unit: Path) -> dict[str, bool]:
    result = analyze("security", "--offline=yes", "--json=short", str(unit))
    return {c["json_field"]: c["set"] for c in json.loads(result.stdout)}


def test_no_smart_drop_in_drops_every_capability_and_device(tmp_path: Path) -> None:
    unit = with_drop_in("no-smart.conf", tmp_path)
    checks = capability_checks(unit)
    assert checks["CapabilityBoundingSet_CAP_SYS_RAWIO"] and checks["AmbientCapabilities"]
    assert checks["SupplementaryGroups"]
    assert exposure(unit) < exposure(UNIT)


def test_nvme_drop_in_adds_sys_admin_and_stays_within_target(tmp_path: Path) -> None:
    unit = with_drop_in("nvme.conf", tmp_path)
    checks = capability_checks(unit)
    assert not checks["CapabilityBoundingSet_CAP_SYS_ADMIN"]
    assert not checks["CapabilityBoundingSet_CAP_SYS_RAWIO"]  # added to, not replaced
    assert exposure(UNIT) < exposure(unit) <= MAX_EXPOSURE


def verify(unit_text: str, tmp_path: Path, drop_in: str | None = None) -> str:
    """Run systemd-analyze verify on a copy whose ExecStart binary exists here."""
    # verify fails when ExecStart's binary is missing, and /usr/local/bin/hwcache-exporter is
    # only there after the documented install: point the copy at a real executable instead.
    tmp_path.mkdir(exist_ok=True)
    launcher = tmp_path / "hwcache-exporter"
    launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m exporter "$@"\n')
    launcher.chmod(0o755)
    copy = tmp_path / "hwcache-exporter.service"
    copy.write_text(unit_text.replace("/usr/local/bin/hwcache-exporter", str(launcher)))
    if drop_in is not None:
        (tmp_path / f"{UNIT.name}.d").mkdir()
        shutil.copy(DROP_INS / drop_in, tmp_path / f"{UNIT.name}.d" / drop_in)
    result = analyze("verify", "--man=no", str(copy))
    # verify exits 0 even for unknown keys or bad values: any output at all is a finding.
    assert result.returncode == 0 or result.stderr
    return (result.stdout + result.stderr).strip()


def test_unit_verifies_without_any_warning(tmp_path: Path) -> None:
    assert verify(UNIT.read_text(), tmp_path) == ""


@pytest.mark.parametrize("drop_in", sorted(p.name for p in DROP_INS.glob("*.conf")))
def test_every_shipped_drop_in_verifies_and_stays_within_target(
    tmp_path: Path, drop_in: str
) -> None:
    assert verify(UNIT.read_text(), tmp_path / "verify", drop_in) == ""
    assert exposure(with_drop_in(drop_in, tmp_path)) <= MAX_EXPOSURE


def test_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("ProtectHome=", "ProtectHomme=", 1)
    assert "Unknown key" in verify(broken, tmp_path)


def test_unit_runs_the_exporter_notify_style_with_state_dir() -> None:
    service = service_settings(UNIT)
    assert service["Type"] == ["notify"] and service["Restart"] == ["on-failure"]
    assert service["EnvironmentFile"] == ["-/etc/default/hwcache-exporter"]
    assert service["StateDirectory"] == ["hwcache-exporter"]
    assert service["User"] == ["hwcache-exporter"]
    assert service["CapabilityBoundingSet"] == service["AmbientCapabilities"] == ["CAP_SYS_RAWIO"]
    argv = shlex.split(service["ExecStart"][0])
    assert argv[0] == "/usr/local/bin/hwcache-exporter" and argv[-1] == "$ARGS"
    # The flags the unit passes itself must be real flags of this exporter.
    state = "/var/lib/hwcache-exporter"
    words = [w.replace("${STATE_DIRECTORY}", state) for w in argv[1:-1]]
    args = build_parser(load_all()).parse_args(words)
    assert args.cache_dir == state


def test_sysusers_creates_a_system_user_without_login(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    result = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    entries = [line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()]
    (user,) = [e for e in entries if e[0] == "hwcache-exporter"]
    assert int(user[2]) < 1000 and user[5] == "/var/lib/hwcache-exporter"
    assert user[6].endswith("nologin")
    assert "hwcache-exporter:x:" in (tmp_path / "etc/group").read_text()


def template_args(tmp_path: Path) -> list[str]:
    """ARGS of the env template as systemd parses it, split on whitespace like $ARGS is."""
    # systemd's env-file parser, reached through the environment.d generator (same syntax).
    conf = tmp_path / "environment.d"
    conf.mkdir()
    shutil.copy(ENV_TEMPLATE, conf / "50-hwcache-exporter.conf")
    result = subprocess.run(
        [str(ENV_GENERATOR)],
        env={"XDG_CONFIG_HOME": str(tmp_path), "PATH": os.defpath},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("ARGS=")]
    # The generator prints shell-quoted assignments: let a POSIX shell unquote them.
    value = subprocess.run(
        ["sh", "-c", line + '\nprintf %s "$ARGS"'],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return value.split()


def test_env_template_args_are_valid_flags(tmp_path: Path) -> None:
    words = template_args(tmp_path)
    args = build_parser(load_all()).parse_args(words)
    exclude = re.compile(getattr(args, "opt_filesystems_mount-points-exclude"))
    for sandbox_mount in ("/var/lib/hwcache-exporter", "/root", "/proc", "/sys/fs/cgroup"):
        assert exclude.search(sandbox_mount), sandbox_mount
    for real_mount in ("/", "/home", "/var", "/var/lib/hwcache-exporter-other"):
        assert not exclude.search(real_mount), real_mount


MDWE_LAUNCHER = """\
import ctypes, os, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit(f"PR_SET_MDWE failed: errno {ctypes.get_errno()}")
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def test_exporter_runs_with_kernel_write_xor_execute(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes stand-in: the kernel's own MDWE (prctl, Linux >= 6.3)."""
    launcher = tmp_path / "mdwe.py"
    launcher.write_text(MDWE_LAUNCHER)
    probe = "import mmap; mmap.mmap(-1, 4096, prot=7)"  # PROT_READ|WRITE|EXEC
    refused = subprocess.run(
        [sys.executable, str(launcher), "-c", probe], capture_output=True, text=True, check=False
    )
    assert "PermissionError" in refused.stderr  # the restriction is really enforced
    port = free_port()
    argv = [
        sys.executable,
        str(launcher),
        "-m",
        "exporter",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    argv += FIXTURE_ARGS
    argv += ["--collector.cpu", "--collector.hwmon", "--collector.smart", "--collector.memory"]
    argv += [f"--cache.dir={tmp_path / 'state'}"]
    log = tmp_path / "exporter.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=out, env={**os.environ, "PATH": fake_path()}, cwd=REPO
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            body = r.read().decode()
        assert 'hwcache_collector_success{collector="smart"} 1.0' in body, body
        assert 'hwcache_collector_success{collector="cpu"} 1.0' in body
        proc.terminate()
        assert proc.wait(timeout=15) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
