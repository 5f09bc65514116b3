"""Shared process helpers: find the fakes' hung children and assert none outlive a test."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil


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
        for proc in marker_processes(marker):
            proc.kill()


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
