"""Warm restart for remote targets: their cached data in ``--cache.dir``, restored at start.

A restart must not poll every BMC at once: targets restored unexpired are polled when their
interval is up, as if the exporter had kept running.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from aiohttp import web

from exporter import __version__
from exporter.clock import Instant
from exporter.probe_cache import ProbeCache
from exporter.settings import Settings
from exporter.snapshot import SnapshotWriter, read_snapshot
from exporter.snapshot_codec import RestoreReport, restore

log = logging.getLogger(__name__)
FILENAME = "probe-snapshot.json"
# Thousands of targets change all the time: one whole-file write per 30 s at most.
WRITE_INTERVAL = 30.0


class ModuleSettings(Mapping[str, Mapping[str, str]]):
    """Per entry name, what of its module must be unchanged for saved data to apply."""

    def __init__(self, probes: ProbeCache) -> None:
        self.probes = probes

    def __getitem__(self, name: str) -> Mapping[str, str]:
        module = self.probes.config.modules[name.rpartition("/")[0]]
        return {"driver": module.driver, "settings": repr((module.scheme, module.ipmi))}

    def __iter__(self) -> Iterator[str]:
        return iter(self.probes.cache.names)

    def __len__(self) -> int:
        return len(self.probes.cache)


def remote_context() -> dict[str, Any]:
    """What must match for the file to apply (not the boot: BMCs do not reboot with us)."""
    return {"exporter_version": __version__}


async def restore_targets(
    probes: ProbeCache, doc: Mapping[str, Any], settings: ModuleSettings, now: Instant
) -> RestoreReport:
    """Recreate the saved targets still configured and allowed, then restore their data."""
    chosen: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, data in doc["collectors"].items():
        found = probes.resolve(name)
        if found is None:
            skipped[name] = "module gone or target no longer allowed"
        elif len(chosen) >= probes.config.max_targets:
            skipped[name] = f"more than max_targets ({probes.config.max_targets})"
        else:
            probes.entry(*found)
            chosen[name] = data
    report = await restore(probes.cache, {"collectors": chosen}, settings, now)
    for name in (*report.skipped, *report.refused):
        probes.drop(name)  # not restored: no entry until the target is probed
    report.skipped.update(skipped)
    return report


def log_summary(path: object, report: RestoreReport) -> None:
    """Counts, not names: there may be thousands of targets."""
    reasons = Counter([*report.skipped.values(), *report.refused.values()])
    for reason, count in sorted(reasons.items()):
        log.info("not restoring %d remote targets from %s: %s", count, path, reason)
    log.info(
        "restored %d remote targets from %s (%d unexpired)",
        len(report.fresh) + len(report.expired),
        path,
        len(report.fresh),
    )


def persistence(
    probes: ProbeCache, settings: Settings
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup context: restore the targets at start, persist changes, flush at exit."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        assert settings.cache_dir is not None
        path = settings.cache_dir / FILENAME
        context, modules = remote_context(), ModuleSettings(probes)
        doc = await asyncio.to_thread(read_snapshot, path, context)
        if doc is not None:
            now = probes.cache.clock.now()
            log_summary(path, await restore_targets(probes, doc, modules, now))
        writer = SnapshotWriter(probes.cache, path, context, modules, WRITE_INTERVAL)
        probes.cache.on_change(writer.changed)
        yield
        await writer.close()

    return ctx
