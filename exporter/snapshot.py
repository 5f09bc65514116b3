"""Warm restart: persist the metric cache to ``--cache.dir`` and restore it at start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from exporter import __version__
from exporter.cache import MetricCache
from exporter.entry import EntryView
from exporter.settings import Settings
from exporter.snapshot_codec import (
    EntryCopy,
    RestoreReport,
    SnapshotError,
    capture_entries,
    encode_document,
    parse_document,
    restore,
)

log = logging.getLogger(__name__)

FILENAME = "snapshot.json"
TMP_PREFIX = f".{FILENAME}."
TMP_SUFFIX = ".tmp"
MIN_WRITE_INTERVAL = 1.0
# Read at most this much at start (about 700,000 samples); a larger file is ignored.
MAX_SIZE = 64 * 1024 * 1024


def boot_id(procfs: Path) -> str | None:
    """The kernel's boot id: a snapshot from a previous boot describes other hardware state."""
    try:
        return (procfs / "sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def snapshot_context(settings: Settings) -> dict[str, Any]:
    """What must match for a snapshot to apply: exporter version, boot and data sources."""
    return {
        "exporter_version": __version__,
        "boot_id": boot_id(settings.procfs),
        "sources": {
            "procfs": str(settings.procfs),
            "sysfs": str(settings.sysfs),
            "rootfs": str(settings.rootfs),
        },
    }


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a unique temp file in the same directory, fsync, rename over, fsync the dir."""
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_temp_files(directory: Path) -> None:
    """Delete temp files a crash mid-write left behind (the snapshot itself is never partial)."""
    for leftover in directory.glob(f"{TMP_PREFIX}*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            leftover.unlink()
            log.info("removed leftover snapshot temp file %s", leftover.name)


class SnapshotWriter:
    """Writes the snapshot after data changes: off the loop, at most once per interval."""

    def __init__(
        self,
        cache: MetricCache,
        path: Path,
        context: Mapping[str, Any],
        options: Mapping[str, Mapping[str, str]],
        min_interval: float = MIN_WRITE_INTERVAL,
    ) -> None:
        self.cache, self.path, self.context, self.options = cache, path, context, options
        self.min_interval = min_interval
        self.writes = 0
        self._dirty = False
        self._closed = False
        self._last_write = -math.inf
        self._last_error: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def changed(self, view: EntryView) -> None:
        """``MetricCache.on_change`` listener: schedule a (coalesced) write."""
        self._dirty = True
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="snapshot")

    async def _run(self) -> None:
        try:
            while self._dirty:
                delay = self._last_write + self.min_interval - time.monotonic()
                if delay > 0 and not self._closed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                await self._write()
        finally:
            self._task = None

    async def _write(self) -> None:
        self._dirty = False
        entries = capture_entries(self.cache, self.options)
        try:
            await asyncio.to_thread(self._encode_and_write, entries)
        except (OSError, TypeError, ValueError) as exc:
            if str(exc) != self._last_error:
                log.warning("cannot write cache snapshot %s: %s", self.path, exc)
            self._last_error = str(exc)
        else:
            self.writes += 1
            if self._last_error is not None:
                log.info("cache snapshot %s written again", self.path)
            self._last_error = None
        self._last_write = time.monotonic()

    def _encode_and_write(self, entries: list[EntryCopy]) -> None:
        write_atomic(self.path, encode_document(entries, self.context))

    async def close(self) -> None:
        """Flush pending changes now (the final write at shutdown)."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
        elif self._dirty:
            await self._write()


def read_bounded(path: Path, limit: int = MAX_SIZE) -> bytes:
    """Read ``path`` only if it is a regular file (no symlink, FIFO, device) of ``limit`` bytes."""
    mode = path.lstat().st_mode
    if not stat.S_ISREG(mode):
        raise SnapshotError(f"not a regular file ({_kind(mode)})")
    # O_NOFOLLOW and O_NONBLOCK: a swap since the lstat can neither redirect nor block us.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SnapshotError(f"not a regular file ({_kind(info.st_mode)})")
        if info.st_size > limit:
            raise SnapshotError(f"{info.st_size} bytes, more than the {limit}-byte limit")
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(limit + 1)  # it may have grown since the fstat
    finally:
        os.close(fd)
    if len(data) > limit:
        raise SnapshotError(f"more than the {limit}-byte limit")
    return data


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return kind
    return "unknown type"


def read_snapshot(path: Path, context: Mapping[str, Any]) -> dict[str, Any] | None:
    """Load the snapshot if there is a usable one; log and ignore any other (never fatal)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        remove_stale_temp_files(path.parent)
        return parse_document(read_bounded(path), context)
    except FileNotFoundError:
        log.info("no cache snapshot at %s yet: collecting everything", path)
    except (OSError, SnapshotError) as exc:
        log.warning("ignoring cache snapshot %s: %s", path, exc)
    return None


def log_report(path: Path, report: RestoreReport) -> None:
    """One line per skipped or refused collector, one summary line."""
    for name, reason in sorted(report.skipped.items()):
        log.info("not restoring %s from the cache snapshot: %s", name, reason)
    for name, reason in sorted(report.refused.items()):
        log.warning("refusing %s from the cache snapshot, collecting it afresh: %s", name, reason)
    log.info(
        "restored cache snapshot %s: %d fresh (%s), %d expired (%s)",
        path,
        len(report.fresh),
        ", ".join(report.fresh) or "-",
        len(report.expired),
        ", ".join(report.expired) or "-",
    )


def persistence(
    cache: MetricCache, settings: Settings
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup context: restore before warm-up, persist changes, flush at exit."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        assert settings.cache_dir is not None
        path = settings.cache_dir / FILENAME
        context = snapshot_context(settings)
        options = {c.name: c.options for c in settings.collectors}
        doc = await asyncio.to_thread(read_snapshot, path, context)
        if doc is not None:
            log_report(path, await restore(cache, doc, options, cache.clock.now()))
        writer = SnapshotWriter(cache, path, context, options)
        cache.on_change(writer.changed)
        yield
        await writer.close()

    return ctx
