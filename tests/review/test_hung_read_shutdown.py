"""Review: SIGTERM must stop the exporter even while a sysfs read is hung in a worker thread."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from tests.support import PROCFS, run_exporter

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
