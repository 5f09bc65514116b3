"""Shared test helpers: fixture locations, free ports, a real exporter subprocess."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
FAKES = REPO / "tests" / "fakes"
FIXTURES = REPO / "tests" / "fixtures"
SYSFS = FIXTURES / "sys"
PROCFS = FIXTURES / "proc"
SMARTCTL = FIXTURES / "smartctl"
NVIDIA_SMI = FIXTURES / "nvidia-smi"
# The fixture roots, with only the collectors the test names enabled after it.
FIXTURE_ARGS = (f"--path.procfs={PROCFS}", f"--path.sysfs={SYSFS}", "--collector.disable-defaults")


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
        return read_log(self.log)


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether a GET of ``url`` answers 200 (any connection or HTTP error: False)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a subprocess: SIGTERM, then SIGKILL after 15 s; always reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running(
    argv: Sequence[str],
    log: Path,
    ready: Callable[[], bool],
    ready_timeout: float,
    name: str,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` logging to ``log``, wait until ``ready()``; always stop it."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}:\n{read_log(log)}")
            if ready():
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {ready_timeout}s:\n{read_log(log)}")
            time.sleep(0.1)
        yield proc
    finally:
        stop(proc)


def read_log(log: Path) -> str:
    """A subprocess log file as text."""
    return log.read_text(errors="replace")


@contextlib.contextmanager
def run_exporter(
    args: Sequence[str],
    tmp_path: Path,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    ready_timeout: float = 60.0,
    command: Sequence[str] = (sys.executable, "-m", "exporter"),
    cwd: Path = REPO,
) -> Iterator[Exporter]:
    """Start the exporter on a free loopback port; always stop it (SIGTERM, then SIGKILL)."""
    port = free_port()
    log = tmp_path / f"exporter-{port}.log"
    full_env = {**os.environ, "PATH": fake_path(), **(env or {})}
    argv = [*command, f"--web.listen-address=127.0.0.1:{port}", *args]
    url = f"http://127.0.0.1:{port}" + ("/-/ready" if wait_ready else "/-/healthy")
    with running(
        argv, log, lambda: answers(url, timeout=30), ready_timeout, "exporter", full_env, cwd
    ) as proc:
        yield Exporter(proc, port, log)


def readme_blocks(heading: str) -> list[str]:
    """The ```sh blocks under a README.md heading (up to the next heading), in order."""
    lines = (REPO / "README.md").read_text().splitlines()
    section, fenced = [], False
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("#") and not fenced:
            break
        fenced ^= line.startswith("```")
        section.append(line)
    blocks = re.findall(r"^```sh\n(.*?)^```$", "\n".join(section), re.M | re.S)
    assert blocks, f"no sh block under {heading!r} in README.md"
    return blocks


@dataclass(frozen=True)
class Dist:
    """The sdist and wheel that ``python -m build`` made of the checkout."""

    sdist: Path
    wheel: Path


@dataclass(frozen=True)
class Installed:
    """A fresh venv outside the checkout with the wheel installed (not editable)."""

    venv: Path
    python: Path
    script: Path


def wait_for(
    predicate: Callable[[], object], what: str = "the condition", timeout: float = 30.0
) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """The CPU time process ``pid`` used so far, its threads' included (user and system)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def exporter_exit(
    args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m exporter args`` expecting it to exit on its own (``env``: the whole
    environment; default: this one's)."""
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
