"""The Containerfile: built offline with podman, run read-only as non-root on the host's mounts.

No image registry is reachable, so the Debian 12 base is the cached debootstrap root
(tests/container.py) imported with ``podman import``; the build context is the unpacked
sdist plus the wheels of README "Install without network access".
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator

import pytest

from exporter import __version__
from tests.container import pristine_root
from tests.support import Dist, readme_blocks

BASE = "localhost/hwcache-exporter-test-base:bookworm"
IMAGE = "localhost/hwcache-exporter:test"
# runc and cgroupfs: crun refuses hybrid cgroup hierarchies; limits within the caller's.
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
CMD = [
    "--path.procfs=/host/proc",
    "--path.sysfs=/host/sys",
    "--path.rootfs=/host/root",
    "--no-collector.filesystems",
]


def podman(*args: str, timeout: float = 600) -> str:
    """Run podman; fail with its output."""
    if shutil.which("podman") is None:
        raise RuntimeError("podman not found: install it (make debian-deps)")
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"podman {args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def logs(name: str) -> str:
    """The container's output (the exporter logs to stderr)."""
    result = subprocess.run([*PODMAN, "logs", name], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def image(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image built from the Containerfile in the unpacked sdist, offline."""
    if os.geteuid() != 0:
        pytest.fail("the image test runs podman as root: run `make test` as root")
    work = tmp_path_factory.mktemp("image")
    with tarfile.open(dist.sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        archive.extractall(work, filter="data")
    context = work / top
    build, _ = readme_blocks("### Install without network access")
    subprocess.run(["/bin/sh", "-ec", build], cwd=context, check=True, capture_output=True)
    tarball = work / "base.tar"
    subprocess.run(["tar", "-C", str(pristine_root()), "-cf", str(tarball), "."], check=True)
    podman("import", "-q", str(tarball), BASE)
    tarball.unlink()
    podman("build", "-q", "--network=none", *LIMITS, f"--build-arg=BASE={BASE}",
           "--build-arg=PIP_OFFLINE=1", "--build-arg=TOOLS=", "-t", IMAGE,
           "-f", "Containerfile", str(context))  # fmt: skip
    try:
        yield IMAGE
    finally:
        subprocess.run([*PODMAN, "rmi", "-f", IMAGE, BASE], capture_output=True, check=False)


@contextlib.contextmanager
def started(image: str, name: str) -> Iterator[str]:
    """The image's default command, read-only, no capabilities, host mounts read-only."""
    podman("run", "-d", "--name", name, "--network=none", "--read-only", "--cap-drop=ALL",
           "--security-opt=no-new-privileges", *LIMITS, "-v", "/proc:/host/proc:ro",
           "-v", "/sys:/host/sys:ro", "-v", "/:/host/root:ro", "-v", "/dev:/dev:ro", image)  # fmt: skip
    try:
        yield name
    finally:
        subprocess.run([*PODMAN, "rm", "-f", name], capture_output=True, check=False)


def scrape(name: str, path: str, timeout: float = 60) -> str:
    """GET a path with curl inside the container, polling until it answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        result = subprocess.run(
            [*PODMAN, "exec", name, "curl", "-sf", f"http://127.0.0.1:9847{path}"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if result.returncode == 0:
            return result.stdout
        assert time.monotonic() < deadline, logs(name)
        time.sleep(0.25)


def test_image_runs_as_nobody_with_the_documented_command(image: str) -> None:
    config = podman("inspect", image, "--format",
                    "{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.Cmd}}")  # fmt: skip
    user, entrypoint, cmd = config.strip().split("|")
    assert user == "65534:65534"
    assert entrypoint == '["/usr/bin/tini","--","/opt/hwcache-exporter/bin/hwcache-exporter"]'
    assert cmd.startswith("[" + ",".join(f'"{flag}"' for flag in CMD)), cmd


def test_container_reads_the_host_read_only_and_stops_cleanly(image: str) -> None:
    with started(image, f"hwcache-test-{os.getpid()}") as name:
        scrape(name, "/-/ready")
        body = scrape(name, "/metrics")
        assert podman("exec", name, "id", "-u").strip() == "65534"
        assert f'version="{__version__}"' in body
        successes = re.findall(
            r'^hwcache_collector_success\{collector="(\w+)"\} (\S+)$', body, re.M
        )
        assert {"cpu", "memory", "system", "hwmon"} <= {c for c, _ in successes}, successes
        assert all(value == "1.0" for _, value in successes), (successes, logs(name))
        kernel = re.search(r'^hw_system_info\{[^}]*kernel_release="([^"]+)"', body, re.M)
        assert kernel and kernel.group(1) == platform.release(), body
        assert re.search(r"^hw_memory_total_bytes [1-9]", body, re.M), body
        podman("stop", "-t", "20", name)
        state = podman("inspect", name, "--format", "{{.State.ExitCode}}").strip()
        assert state == "0", logs(name)
        assert "stopped" in logs(name)


def test_orphans_left_by_tools_are_reaped(image: str) -> None:
    """Orphans are re-parented to PID 1 of the container: something there must reap them."""
    with started(image, f"hwcache-init-{os.getpid()}") as name:
        scrape(name, "/-/ready")
        assert podman("exec", name, "cat", "/proc/1/comm").strip() == "tini"
        # A subshell starts a short sleep and exits: the sleep's parent is now PID 1.
        pid = podman("exec", name, "sh", "-c", "(sleep 0.3 & echo $!) ; true").strip()
        state = f"cat /proc/{pid}/stat 2>/dev/null || true"
        deadline = time.monotonic() + 15
        while stat := podman("exec", name, "sh", "-c", state).strip():
            assert time.monotonic() < deadline, f"orphan {pid} never reaped: {stat}"
            time.sleep(0.2)
