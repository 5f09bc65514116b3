"""The command runner on real subprocesses: hang, flood, non-zero exit, cancel."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from exporter.runner import (
    CommandNotFound,
    CommandOutputTooLarge,
    CommandPermissionDenied,
    CommandRunner,
    CommandTimeout,
)
from tests.processes import marker_processes


def script(tmp_path: Path, name: str, body: str) -> str:
    """Write an executable Python script and return its path."""
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\nimport os, sys, time, subprocess\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def hang_script(tmp_path: Path, marker: str) -> str:
    """A tool that starts a sleeping child carrying ``marker``, then sleeps itself."""
    return script(
        tmp_path,
        "hang",
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'])\n"
        "time.sleep(60)",
    )


async def test_returns_status_stdout_stderr(tmp_path: Path) -> None:
    tool = script(tmp_path, "t", "print('out'); print('err', file=sys.stderr); sys.exit(3)")
    result = await CommandRunner().run([tool, "--x"], timeout=10)
    assert (result.returncode, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert result.argv == (tool, "--x")


async def test_arguments_are_never_shell_interpreted(tmp_path: Path) -> None:
    tool = script(tmp_path, "t", "print(sys.argv[1])")
    result = await CommandRunner().run([tool, "$(touch pwned); `id`"], timeout=10)
    assert result.stdout == b"$(touch pwned); `id`\n"
    assert not (tmp_path / "pwned").exists()


async def test_hang_kills_whole_process_group(tmp_path: Path) -> None:
    marker = f"hang-marker-{os.getpid()}-{time.monotonic_ns()}"
    tool = hang_script(tmp_path, marker)
    runner = CommandRunner()
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"timed out after 0\.5s"):
        await runner.run([tool, marker], timeout=0.5)
    assert time.monotonic() - started < 5
    await asyncio.sleep(0.2)
    assert marker_processes(marker) == []
    assert runner.live_process_groups == frozenset()


async def test_cancel_kills_whole_process_group(tmp_path: Path) -> None:
    marker = f"cancel-marker-{os.getpid()}-{time.monotonic_ns()}"
    tool = hang_script(tmp_path, marker)
    task = asyncio.create_task(CommandRunner().run([tool, marker], timeout=60))
    await asyncio.sleep(0.5)
    assert marker_processes(marker)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)
    assert marker_processes(marker) == []


async def test_output_flood_is_bounded(tmp_path: Path) -> None:
    tool = script(tmp_path, "flood", "while True: sys.stdout.write('x' * 65536)")
    with pytest.raises(CommandOutputTooLarge, match="exceeded 1000000 bytes"):
        await CommandRunner(max_output=1_000_000).run([tool], timeout=10)


async def test_missing_and_unexecutable_tools(tmp_path: Path) -> None:
    runner = CommandRunner()
    with pytest.raises(CommandNotFound):
        await runner.run([str(tmp_path / "nope")], timeout=5)
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(CommandPermissionDenied):
        await runner.run([str(plain)], timeout=5)


def test_which_uses_the_runner_path(tmp_path: Path) -> None:
    script(tmp_path, "mytool", "pass")
    assert CommandRunner(env={"PATH": str(tmp_path)}).which("mytool") == str(tmp_path / "mytool")
    assert CommandRunner(env={"PATH": str(tmp_path)}).which("ls") is None
