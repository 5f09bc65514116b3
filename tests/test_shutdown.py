"""Process lifecycle: sd_notify readiness, graceful SIGTERM/SIGINT, tools killed at exit."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from exporter import sdnotify
from tests.support import (
    FIXTURE_ARGS,
    PROCFS,
    REPO,
    cpu_seconds,
    fake_path,
    free_port,
    run_exporter,
    wait_for,
)
from tests.websec import SLOW_ROUNDS, auth_config, basic


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket like systemd's notify socket, bound in tmp_path."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(20)
        yield sock, str(path)


def receive(sock: socket.socket) -> dict[str, str]:
    """One sd_notify datagram as a dict of its assignments."""
    lines = sock.recv(4096).decode().splitlines()
    return dict(line.split("=", 1) for line in lines)


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: state, ppid, pgrp, ...; None when gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def live_processes_with(marker: str) -> list[int]:
    """Pids of live processes whose argv contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if marker.encode() in argv and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_notify_is_a_noop_without_socket() -> None:
    assert sdnotify.notify("READY=1", env={}) is False
    assert sdnotify.socket_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None


def test_notify_to_missing_socket_fails_softly(tmp_path: Path) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")}
    assert sdnotify.notify("READY=1", env=env) is False


def test_notify_reaches_abstract_namespace_socket() -> None:
    name = f"hwcache-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert sdnotify.notify("READY=1", "STATUS=up", env={"NOTIFY_SOCKET": "@" + name})
        assert receive(sock) == {"READY": "1", "STATUS": "up"}


def test_ready_only_when_listening_and_stopping_at_sigterm(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    port = free_port()
    argv = [sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{port}"]
    env = {**os.environ, "PATH": fake_path(), "NOTIFY_SOCKET": path}
    log = tmp_path / "exporter.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*argv, *FIXTURE_ARGS, "--collector.cpu"], stdout=out, stderr=out, env=env, cwd=REPO
        )
    try:
        ready = receive(sock)
        assert ready == {"READY": "1", "STATUS": f"listening on 127.0.0.1:{port}"}
        # READY=1 promises a listening socket: connecting right now must work.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/healthy", timeout=5) as resp:
            assert resp.status == 200
        assert receive(sock) == {"STATUS": "ready; collectors: cpu"}
        proc.send_signal(signal.SIGTERM)
        assert receive(sock)["STOPPING"] == "1"
        assert proc.wait(timeout=15) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _scrape(url: str, result: dict[str, object]) -> None:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            result["status"], result["body"] = response.status, response.read()
    except Exception as exc:  # reported by the test thread
        result["error"] = exc


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_inflight_scrape_completes_then_exit_zero(tmp_path: Path, sig: signal.Signals) -> None:
    samples, delay = 50, 3.0
    args = [
        *FIXTURE_ARGS,
        "--collector.synthetic",
        f"--collector.synthetic.samples={samples}",
        f"--collector.synthetic.delay={delay}",
    ]
    # Not waiting for /-/ready: the warm-up refresh (delay seconds) is still in flight.
    with run_exporter(args, tmp_path, wait_ready=False) as exporter:
        result: dict[str, object] = {}
        scrape = threading.Thread(target=_scrape, args=(exporter.base + "/metrics", result))
        scrape.start()
        time.sleep(0.8)  # the scrape is now waiting on the refresh
        exporter.proc.send_signal(sig)
        deadline = time.monotonic() + 2
        while not _refused(exporter.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _refused(exporter.port) and scrape.is_alive()  # stopped accepting, still serving
        scrape.join(timeout=20)
        assert exporter.proc.wait(timeout=20) == 0, exporter.logs()
    assert "error" not in result and result["status"] == 200
    body = result["body"].decode()  # type: ignore[attr-defined]
    # The samples exist only once the in-flight refresh finished: the scrape waited for it.
    assert sum(line.startswith("hw_synthetic_") for line in body.splitlines()) == samples
    assert "shutting down" in exporter.logs() and "stopped" in exporter.logs()


def test_sigterm_kills_hanging_tool_process_group(tmp_path: Path) -> None:
    marker = f"hang-{uuid.uuid4().hex}"
    env = {"FAKE_SMARTCTL_SCAN_MODE": "hang", "FAKE_HANG_MARKER": marker}
    args = [*FIXTURE_ARGS, "--collector.smart"]
    with run_exporter(args, tmp_path, env=env, wait_ready=False) as exporter:
        deadline = time.monotonic() + 15
        while not live_processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        (child,) = live_processes_with(marker)  # the fake smartctl's sleeping child
        fields = stat_fields(child)
        assert fields is not None
        tool = int(fields[1])  # the fake smartctl itself, parent of the sleeping child
        assert int(fields[2]) == tool and alive(tool)  # one process group, led by the tool
        stopped = time.monotonic()
        exporter.proc.terminate()
        assert exporter.proc.wait(timeout=15) == 0, exporter.logs()
    assert time.monotonic() - stopped < 5  # no in-flight scrape: nothing to wait for
    deadline = time.monotonic() + 5
    while live_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live_processes_with(marker) == [] and not alive(tool)
    assert "stopped" in exporter.logs()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_second_signal_cuts_the_drain_short(tmp_path: Path, sig: signal.Signals) -> None:
    """A scrape waits on a hung tool; signal one drains, signal two ends it at once, cleanly."""
    pidfile, cache = tmp_path / "ipmitool.pids", tmp_path / "cache"
    env = {"FAKE_IPMITOOL_MODE": "hang", "FAKE_IPMITOOL_PIDFILE": str(pidfile)}
    args = [*FIXTURE_ARGS, "--collector.ipmi", "--collector.dmi", "--web.max-scrape-wait=60s",
            "--collector.ipmi.timeout=5m", f"--cache.dir={cache}"]  # fmt: skip
    with run_exporter(args, tmp_path, env=env, wait_ready=False) as exporter:
        wait_for(lambda: pidfile.exists() and len(pidfile.read_text().split()) >= 2, "ipmitool")
        tools = [int(pid) for pid in pidfile.read_text().split()]
        scrape = threading.Thread(target=cut_scrape, args=(exporter.base,), daemon=True)
        scrape.start()
        wait_for(lambda: bool(established(exporter.proc.pid)), "the scrape's connection")
        exporter.proc.send_signal(sig)
        wait_for(lambda: "shutting down" in exporter.logs(), "the drain")
        with pytest.raises(subprocess.TimeoutExpired):
            exporter.proc.wait(timeout=2)  # still draining: the scrape is in flight
        started = time.monotonic()
        exporter.proc.send_signal(sig)
        assert exporter.proc.wait(timeout=10) == 0, exporter.logs()
        elapsed = time.monotonic() - started
        logs = exporter.logs()
    assert elapsed < 5, f"the second signal took {elapsed:.1f}s to end the drain"
    assert "signal received again" in logs and "stopped" in logs
    assert "Traceback" not in logs and "KeyboardInterrupt" not in logs, logs
    assert not any(alive(pid) for pid in tools), "a hung tool outlived the exporter"
    assert (cache / "snapshot.json").is_file(), logs


def test_second_signal_cancels_a_scrape_waiting_for_its_password_check(tmp_path: Path) -> None:
    """The check is slow and the scrape behind it would wait on a hung tool: both are cut."""
    pidfile = tmp_path / "ipmitool.pids"
    env = {"FAKE_IPMITOOL_MODE": "hang", "FAKE_IPMITOOL_PIDFILE": str(pidfile)}
    config = auth_config(tmp_path / "web.yml", {"prometheus": "scrape"}, rounds=SLOW_ROUNDS)
    args = [*FIXTURE_ARGS, "--collector.ipmi", "--web.max-scrape-wait=60s",
            "--collector.ipmi.timeout=5m", f"--web.config.file={config}"]  # fmt: skip
    with run_exporter(args, tmp_path, env=env, wait_ready=False) as exporter:
        wait_for(lambda: pidfile.exists() and len(pidfile.read_text().split()) >= 2, "ipmitool")
        spent = cpu_seconds(exporter.proc.pid)
        headers = basic("prometheus", "scrape")  # never checked yet: bcrypt runs
        scrape = threading.Thread(target=cut_scrape, args=(exporter.base, headers), daemon=True)
        scrape.start()
        wait_for(lambda: cpu_seconds(exporter.proc.pid) - spent > 0.3, "the password check")
        exporter.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "shutting down" in exporter.logs(), "the drain")
        exporter.proc.send_signal(signal.SIGTERM)
        # Not cancelled, the scrape would hold the drain for its whole timeout, twice over.
        assert exporter.proc.wait(timeout=15) == 0, exporter.logs()
        logs = exporter.logs()
    assert "cancelling 1 in-flight requests" in logs and "stopped" in logs, logs
    assert "Traceback" not in logs, logs


def test_second_signal_cuts_writing_to_a_client_that_does_not_read(tmp_path: Path) -> None:
    # About 5.6 MiB: more than loopback's socket buffers take from a client that does not read.
    args = [*FIXTURE_ARGS, "--collector.synthetic", "--collector.synthetic.samples=100000",
            "--web.write-timeout=10m"]  # fmt: skip
    with run_exporter(args, tmp_path) as exporter, socket.socket() as sock:
        assert exporter.get("/metrics")[0] == 200  # rendered and stored: written at once
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", exporter.port))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(12, socket.MSG_PEEK) == b"HTTP/1.1 200"  # the body is being written
        exporter.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "shutting down" in exporter.logs(), "the drain")
        with pytest.raises(subprocess.TimeoutExpired):
            exporter.proc.wait(timeout=2)  # still draining: the body is not written yet
        started = time.monotonic()
        exporter.proc.send_signal(signal.SIGTERM)
        assert exporter.proc.wait(timeout=30) == 0, exporter.logs()
        elapsed = time.monotonic() - started
        logs = exporter.logs()
    assert elapsed < 5, f"the second signal took {elapsed:.1f}s to end the drain"
    assert "cancelling 1 in-flight requests" in logs and "stopped" in logs, logs
    assert "Traceback" not in logs, logs


def established(pid: int) -> list[object]:
    """The exporter's established TCP connections (a client is connected)."""
    return [c for c in psutil.Process(pid).net_connections("tcp") if c.status == "ESTABLISHED"]


def cut_scrape(base: str, headers: dict[str, str] | None = None) -> None:
    """A scrape waiting for the hung ipmi refresh; the second signal cuts it off."""
    request = urllib.request.Request(
        base + "/metrics?collect[]=ipmi",
        headers={"X-Prometheus-Scrape-Timeout-Seconds": "60", **(headers or {})},
    )
    with contextlib.suppress(OSError, http.client.HTTPException):
        urllib.request.urlopen(request, timeout=90).close()


# serve.SHUTDOWN_TIMEOUT is 10 s; allow a little more for interpreter teardown.
STOP_WITHIN = 14.0


def test_sigterm_stops_exporter_with_a_hung_sysfs_read(tmp_path: Path) -> None:
    chip = tmp_path / "sys" / "class" / "hwmon" / "hwmon0"
    chip.mkdir(parents=True)
    fifo = chip / "name"
    os.mkfifo(fifo)  # open() blocks until a writer appears: a wedged driver attribute
    args = [
        "--collector.disable-defaults",
        "--collector.hwmon",
        "--collector.hwmon.timeout=1s",
        f"--path.sysfs={tmp_path / 'sys'}",
        f"--path.procfs={PROCFS}",
    ]
    try:
        with run_exporter(args, tmp_path, ready_timeout=20) as exporter:
            status, body = exporter.get("/cache/stats")
            assert status == 200 and b"timed out after 1s" in body
            exporter.proc.terminate()
            try:
                exporter.proc.wait(timeout=STOP_WITHIN)
            except subprocess.TimeoutExpired:
                exporter.proc.kill()
                exporter.proc.wait()
                raise AssertionError(
                    f"still running {STOP_WITHIN}s after SIGTERM:\n{exporter.logs()[-2000:]}"
                ) from None
    finally:
        # Unblock the reader (if any) so nothing lingers; O_NONBLOCK fails when none is left.
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
