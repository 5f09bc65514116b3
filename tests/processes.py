"""Shared process helpers: write tool scripts, find hung children, assert none outlive a test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil


def script(tmp_path: Path, name: str, body: str) -> str:
    """Write an executable Python script and return its path."""
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\nimport os, sys, time, subprocess\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def marker_processes(marker: str) -> list[psutil.Process]:
    """Live (not zombie) processes with ``marker`` in an argument of their command line."""
    return [
        proc
        for proc in psutil.process_iter(["cmdline", "status"])
        if proc.info["status"] != psutil.STATUS_ZOMBIE
        and any(marker in part for part in proc.info["cmdline"] or [])
    ]


async def wait_for_marker(marker: str) -> None:
    """Wait until the fake's sleeping child with ``marker`` runs (so the test can fail)."""
    for _ in range(60):
        if marker_processes(marker):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the fake's sleeping child never started")


@contextlib.asynccontextmanager
async def no_orphans_after(marker: str) -> AsyncIterator[None]:
    """Wait for the hung child with ``marker``; after the block none may be alive (kill any)."""
    try:
        await wait_for_marker(marker)
        yield
        await asyncio.sleep(0.1)
        assert marker_processes(marker) == []
    finally:
        kill_markers(marker)


def assert_gone(pidfile: Path) -> None:
    """The hung fake and its sleeping child are dead (zombies are already dead)."""
    deadline = time.monotonic() + 10
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        if not alive:
            return
        time.sleep(0.05)
    raise AssertionError(f"orphan processes survived: {alive}")


def open_fds() -> int:
    """How many file descriptors this process has open right now."""
    return len(os.listdir("/proc/self/fd"))


def zombie_children() -> list[psutil.Process]:
    """Children of this process that exited but were never reaped."""
    return [
        child
        for child in psutil.Process().children(recursive=True)
        if child.status() == psutil.STATUS_ZOMBIE
    ]


def kill_markers(marker: str) -> None:
    """Kill any process still carrying ``marker`` (test cleanup)."""
    for proc in marker_processes(marker):
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


async def wait_gone(marker: str, within: float = 2.0) -> list[psutil.Process]:
    """Wait up to ``within`` seconds for every ``marker`` process to die; return survivors."""
    for _ in range(round(within / 0.05)):
        if not marker_processes(marker):
            return []
        await asyncio.sleep(0.05)
    return marker_processes(marker)
