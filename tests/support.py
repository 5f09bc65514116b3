"""Shared test helpers: fixture locations, free ports, a real exporter subprocess."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAKES = REPO / "tests" / "fakes"
SHARED_FIXTURES = Path(
    os.environ.get("HWCACHE_FIXTURES", REPO.parent / "shared" / "fixtures")
).resolve()
SYSFS = SHARED_FIXTURES / "node_exporter" / "sys"
PROCFS = SHARED_FIXTURES / "node_exporter" / "proc"
SMARTCTL = SHARED_FIXTURES / "smartctl"
NVIDIA_SMI = SHARED_FIXTURES / "nvidia-smi"


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fake_path(extra: str = "") -> str:
    """A PATH with the fake tools first (then the real PATH, so python3 etc. resolve)."""
    parts = [str(FAKES), extra, os.environ.get("PATH", "")]
    return os.pathsep.join(p for p in parts if p)


class Exporter:
    """A running ``python -m exporter`` subprocess."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """GET a path; returns status and body (no exception on 4xx/5xx)."""
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def logs(self) -> str:
        """Everything the exporter wrote to stderr/stdout so far."""
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def run_exporter(
    args: Sequence[str],
    tmp_path: Path,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    ready_timeout: float = 60.0,
) -> Iterator[Exporter]:
    """Start the exporter on a free loopback port; always stop it (SIGTERM, then SIGKILL)."""
    port = free_port()
    log = tmp_path / f"exporter-{port}.log"
    full_env = {**os.environ, "PATH": fake_path(), **(env or {})}
    argv = [sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{port}", *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)
    exporter = Exporter(proc, port, log)
    try:
        deadline = time.monotonic() + ready_timeout
        path = "/-/ready" if wait_ready else "/-/healthy"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"exporter exited {proc.returncode}:\n{exporter.logs()}")
            with contextlib.suppress(OSError):
                status, _ = exporter.get(path)
                if status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"exporter not ready after {ready_timeout}s:\n{exporter.logs()}")
            time.sleep(0.1)
        yield exporter
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
