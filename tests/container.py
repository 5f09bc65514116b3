"""A booted Debian 12 container (debootstrap + systemd-nspawn) to test the systemd install."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

ROOT_CACHE = Path("/var/cache/hwcache-exporter-tests")
SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "curl", "tini")
STAMP = ".hwcache-exporter-test-root"
CONTAINER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}

WAIT_FOR_BOOT = """
for i in $(seq 600); do
    [ -S /run/systemd/private ] && break
    sleep 0.1
done
systemctl is-system-running --wait || true
"""


def debian_mirror() -> str:
    """The host's Debian mirror, read from its apt sources (so none is written here)."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.is_file():
        for stanza in deb822.read_text().split("\n\n"):
            fields: dict[str, str] = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
            if SUITE in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0]
    for line in Path("/etc/apt/sources.list").read_text().splitlines():
        words = re.sub(r"\[[^]]*\]", "", line).split()
        if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
            return words[1]
    raise RuntimeError(f"no Debian {SUITE} mirror in the host's apt sources")


def pristine_root() -> Path:
    """The cached debootstrapped root, built on first use (about two minutes)."""
    root, stamp = ROOT_CACHE / "debian-12-root", " ".join((SUITE, *PACKAGES))
    ROOT_CACHE.mkdir(parents=True, exist_ok=True)
    with (ROOT_CACHE / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test runs build it once
        if (root / STAMP).is_file() and (root / STAMP).read_text() == stamp:
            return root
        building = ROOT_CACHE / "building"
        # An interrupted debootstrap leaves /proc mounted inside: unmount before removing.
        subprocess.run(["umount", "-R", "-l", str(building / "proc")], capture_output=True)
        shutil.rmtree(building, ignore_errors=True)
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
             str(building), debian_mirror()],
            capture_output=True, text=True, timeout=1800, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"debootstrap failed:\n{result.stdout[-3000:]}{result.stderr}")
        (building / STAMP).write_text(stamp)
        shutil.rmtree(root, ignore_errors=True)
        building.rename(root)
    return root


class Container:
    """A ``systemd-nspawn -b`` container; commands run in it through ``nsenter``."""

    def __init__(self, nspawn: subprocess.Popen[bytes], leader: int, log: Path) -> None:
        self.nspawn, self.leader, self.log = nspawn, leader, log

    def sh(
        self, script: str, cwd: str = "/", timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell script as root inside the container (``sh -e``, clean environment)."""
        env = [f"{k}={v}" for k, v in CONTAINER_ENV.items()]
        argv = ["nsenter", "-t", str(self.leader), "-a", "--", "/usr/bin/env", "-i", *env,
                "/bin/sh", "-ec", f"cd {cwd}\n{script}"]  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"in the container, exit {result.returncode}:\n{script}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def journal(self, unit: str) -> str:
        """The unit's journal since boot."""
        return self.sh(f"journalctl -u {unit} --no-pager -o cat", check=False).stdout

    def shutdown(self) -> None:
        """SIGTERM makes nspawn ask the container's systemd to power off; SIGKILL if stuck."""
        if self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait()


def _leader(nspawn: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> int:
    """The container's PID 1 (systemd), a child of the nspawn process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if nspawn.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited {nspawn.returncode}:\n{log.read_text()}")
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(nspawn.pid).children():
                if child.name() == "systemd":
                    return child.pid
        time.sleep(0.1)
    raise RuntimeError(f"no systemd in the container after {timeout}s:\n{log.read_text()}")


@contextlib.contextmanager
def booted(root: Path, log: Path) -> Iterator[Container]:
    """Boot ``root`` without network; yield once its systemd reports the boot finished."""
    name = f"hwcache-test-{os.getpid()}"
    argv = ["systemd-nspawn", "--quiet", "-D", str(root), "-b", "--keep-unit",
            "--register=no", "--private-network", "-M", name]  # fmt: skip
    with log.open("wb") as out:
        nspawn = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    container = Container(nspawn, 0, log)
    try:
        container.leader = _leader(nspawn, log)
        # Until systemd has opened its private socket, systemctl cannot reach it.
        state = container.sh(WAIT_FOR_BOOT, check=False, timeout=240)
        if state.stdout.strip() not in {"running", "degraded"}:
            raise RuntimeError(f"container boot: {state.stdout}{state.stderr}\n{log.read_text()}")
        yield container
    finally:
        container.shutdown()


UNIT = "hwcache-exporter"


URL = "http://127.0.0.1:9847"


MAX_EXPOSURE = 2.5


WAIT_READY = f"""
for i in $(seq 240); do
    [ "$(curl -s -o /dev/null -w '%{{http_code}}' $AUTH {URL}/-/ready)" = 200 ] && exit 0
    sleep 0.25
done
echo "not ready after 60s" >&2; exit 1
"""


def show(container: Container, *props: str) -> dict[str, str]:
    """``systemctl show`` properties of the unit."""
    flags = " ".join(f"-p {p}" for p in props)
    out = container.sh(f"systemctl show {UNIT} {flags}").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_ready(container: Container, auth: str = "") -> None:
    """Poll /-/ready (bounded): the first collection is done."""
    container.sh(f"AUTH='{auth}'\n{WAIT_READY}")


def stats(container: Container) -> dict[str, Any]:
    """GET /cache/stats from inside the container."""
    data: dict[str, Any] = json.loads(container.sh(f"curl -sf {URL}/cache/stats").stdout)
    return data
