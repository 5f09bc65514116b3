"""The process-wide metric cache: one entry per collector, expiry stamps, single-flight refresh."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from cachetools import LRUCache
from prometheus_client.metrics_core import Metric

from collectors.base import Collector, NotApplicable, Skipped
from exporter.clock import Clock, system_clock
from exporter.families import BUILTIN, FamilyError, Namespace, check_families

log = logging.getLogger(__name__)


class State(StrEnum):
    """What an entry's last refresh attempt ended in."""

    PENDING = "pending"
    OK = "ok"
    ERROR = "error"
    NOT_APPLICABLE = "not_applicable"


class Result(StrEnum):
    """Label values of ``hwcache_collector_refreshes_total``."""

    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    NOT_APPLICABLE = "not_applicable"


@dataclass
class CacheEntry:
    """Cached families of one collector plus everything known about their freshness."""

    name: str
    collector: Collector
    interval: float
    timeout: float
    families: tuple[Metric, ...] = ()
    state: State = State.PENDING
    collected_at: float | None = None
    expires_at: float = 0.0
    last_attempt_at: float | None = None
    duration: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    generation: int = 0
    series: int = 0
    unreadable_items: int = 0
    refreshes: Counter[str] = field(default_factory=Counter)
    last_forced_at: float | None = None
    invalidations: int = 0
    refresh_again: bool = False
    inflight: asyncio.Task[None] | None = None
    rendered: LRUCache[str, bytes] = field(default_factory=lambda: LRUCache(maxsize=16))
    namespace: Namespace = BUILTIN  # family names it may serve (scripts: their own names)

    @property
    def has_data(self) -> bool:
        """Whether any successful collection is cached."""
        return self.collected_at is not None

    def expired(self, now: float) -> bool:
        """Whether the entry is due for a refresh (also when the clock went back past it)."""
        attempted = self.last_attempt_at
        return now >= self.expires_at or (attempted is not None and now < attempted)

    def status(self, now: float) -> str:
        """One word for operators: refreshing, ok, stale, error, pending, not_applicable."""
        if self.inflight is not None:
            return "refreshing"
        if self.state is State.OK:
            return "stale" if self.expired(now) else "ok"
        return self.state.value


@dataclass(frozen=True)
class Checked:
    """Families that passed ``MetricCache.check``, with their pre-rendered bodies."""

    families: tuple[Metric, ...]
    renders: dict[str, bytes]
    series: int
    skipped: Skipped = field(default_factory=Skipped)


class MetricCache:
    """One per process: holds every collector's families for the life of the process."""

    def __init__(
        self,
        entries: Iterable[CacheEntry],
        clock: Clock = system_clock,
        error_retry_interval: float = 60.0,
    ) -> None:
        self.entries = {entry.name: entry for entry in entries}
        self.clock = clock
        self.error_retry_interval = error_retry_interval
        self.generation = 0
        self.collections_started = 0
        self._listeners: list[Callable[[CacheEntry], None]] = []
        # Encodes an entry's new families off the event loop; raises if they cannot be exposed
        # (set by the app: exporter/render.py). Its bodies by format seed the entry's renders.
        self.prerender: Callable[[str, Sequence[Metric]], dict[str, bytes]] | None = None
        self._closed = False

    def on_change(self, listener: Callable[[CacheEntry], None]) -> None:
        """Call ``listener(entry)`` after every data change (refresh, invalidate)."""
        self._listeners.append(listener)

    def _bump(self, entry: CacheEntry) -> None:
        self.generation += 1
        entry.generation = self.generation
        entry.rendered.clear()
        for listener in self._listeners:
            try:
                listener(entry)
            except Exception:
                log.exception("cache change listener failed for %s", entry.name)

    def refresh(self, name: str) -> asyncio.Task[None]:
        """Start a refresh of ``name`` unless one is already in flight (single-flight)."""
        entry = self.entries[name]
        if entry.inflight is None:
            self.collections_started += 1
            task = asyncio.create_task(self._run(entry), name=f"refresh-{name}")
            entry.inflight = task
        return entry.inflight

    def ensure_fresh(self, names: Iterable[str]) -> list[asyncio.Task[None]]:
        """Start refreshes for expired entries; return every in-flight refresh among ``names``."""
        now = self.clock()
        tasks = []
        for name in names:
            entry = self.entries[name]
            if entry.inflight is None and entry.expired(now) and not self._closed:
                self.refresh(name)
            if entry.inflight is not None:
                tasks.append(entry.inflight)
        return tasks

    async def fresh(self, names: Sequence[str], wait: float) -> None:
        """Refresh what is due among ``names``, waiting at most ``wait`` seconds for it."""
        tasks = self.ensure_fresh(names)
        if tasks and wait > 0:
            # shield: a scrape that gives up (deadline or disconnect) never cancels the refresh.
            await asyncio.wait([asyncio.shield(t) for t in tasks], timeout=wait)

    async def _run(self, entry: CacheEntry) -> None:
        started = time.perf_counter()
        entry.last_attempt_at = self.clock()
        invalidations = entry.invalidations
        entry.collector.take_skipped()  # left over from a collection that timed out
        try:
            async with asyncio.timeout(entry.timeout):
                families = tuple(await entry.collector.collect())
                skipped = entry.collector.take_skipped()
                checked = replace(await self.check(entry, families), skipped=skipped)
        except NotApplicable as exc:
            self._finish(entry, started, Result.NOT_APPLICABLE, str(exc) or "not applicable")
        except TimeoutError:
            msg = f"timed out after {entry.timeout:g}s"
            self._finish(entry, started, Result.TIMEOUT, msg)
        except asyncio.CancelledError:
            entry.inflight = None
            raise
        except Exception as exc:
            error = str(exc) if isinstance(exc, FamilyError) else f"{type(exc).__name__}: {exc}"
            self._finish(entry, started, Result.ERROR, error)
        else:
            try:
                self.commit(entry, checked, lambda e: self._stamp(e, started, Result.SUCCESS, None))
            except FamilyError as exc:
                self._finish(entry, started, Result.ERROR, str(exc))
        if entry.invalidations != invalidations:
            # Invalidated while this refresh read the hardware: its data predates the request.
            entry.expires_at = self.clock()
            if entry.refresh_again and not self._closed:
                entry.refresh_again = False
                self.refresh(entry.name)

    async def check(
        self, entry: CacheEntry, families: Sequence[object], restored: bool = False
    ) -> Checked:
        """Validate and pre-render families in a worker thread; FamilyError if unservable."""
        # Restored families did not come from the collector's code: they must be ones it owns.
        prefixes = entry.namespace.owned(entry.name) if restored else None
        return await asyncio.to_thread(
            self._check_blocking, entry.name, tuple(families), prefixes, entry.namespace
        )

    def _check_blocking(
        self,
        name: str,
        families: tuple[object, ...],
        prefixes: tuple[str, ...] | None,
        namespace: Namespace = BUILTIN,
    ) -> Checked:
        check_families(families, prefixes, namespace)
        valid = tuple(f for f in families if isinstance(f, Metric))
        try:
            renders = self.prerender(name, valid) if self.prerender is not None else {}
        except Exception as exc:
            raise FamilyError(f"cannot be exposed: {type(exc).__name__}: {exc}") from exc
        return Checked(valid, renders, sum(len(f.samples) for f in valid))

    def commit(
        self, entry: CacheEntry, checked: Checked, stamp: Callable[[CacheEntry], None]
    ) -> None:
        """Store checked families (refresh or restore) unless another collector serves one."""
        # No await between the clash check and the store, so concurrent commits can't race;
        # ``stamp`` sets the entry's state and timestamps.
        clash = self._clash(entry, checked.families)
        if clash:
            raise FamilyError(clash)
        entry.families, entry.series = checked.families, checked.series
        entry.unreadable_items = checked.skipped.count
        stamp(entry)
        if checked.skipped.count:
            log.warning("collector %s: %s", entry.name, checked.skipped)
        self._bump(entry)
        entry.rendered.update(checked.renders)

    def _clash(self, entry: CacheEntry, families: tuple[Metric, ...]) -> str | None:
        """An error message if another collector already serves one of these family names."""
        names = {family.name for family in families}
        for other in self.entries.values():
            clash = names.intersection(f.name for f in other.families) if other is not entry else ()
            if clash:
                return f"family {min(clash)} is already served by collector {other.name}"
        return None

    def _finish(self, entry: CacheEntry, started: float, result: Result, error: str) -> None:
        self._stamp(entry, started, result, error)
        self._bump(entry)

    def _stamp(self, entry: CacheEntry, started: float, result: Result, error: str | None) -> None:
        now = self.clock()
        entry.duration = time.perf_counter() - started
        entry.refreshes[result.value] += 1
        entry.inflight = None
        if result is Result.SUCCESS:
            entry.state, entry.collected_at, entry.last_error = State.OK, now, None
            entry.consecutive_failures = 0
            entry.expires_at = now + entry.interval
        elif result is Result.NOT_APPLICABLE:
            if entry.state is not State.NOT_APPLICABLE:
                log.info("collector %s not applicable here: %s", entry.name, error)
            entry.families, entry.series, entry.unreadable_items = (), 0, 0
            entry.state, entry.last_error = State.NOT_APPLICABLE, error
            entry.expires_at = now + entry.interval
        else:
            entry.state, entry.last_error = State.ERROR, error
            entry.consecutive_failures += 1
            entry.expires_at = now + min(entry.interval, self.error_retry_interval)
            log.warning("collector %s failed (%s); serving last good data", entry.name, error)

    def invalidate(self, names: Iterable[str], refresh_now: bool, forced: bool = True) -> None:
        """Expire entries (keeping their data as stale); optionally refresh them now.

        A refresh already in flight started before the request, so its data does not count:
        the entry stays expired and ``refresh_now`` collects again once it is done.
        """
        now = self.clock()
        for name in names:
            entry = self.entries[name]
            entry.expires_at = now
            entry.invalidations += 1
            if forced:
                entry.last_forced_at = now
            self._bump(entry)
            if refresh_now and not self._closed:
                if entry.inflight is None:
                    self.refresh(name)
                else:
                    entry.refresh_again = True

    def forced_refresh_wait(self, name: str, min_interval: float) -> float:
        """Seconds until ``name`` may be force-refreshed again (0 when allowed now)."""
        last = self.entries[name].last_forced_at
        if last is None:
            return 0.0
        # Capped: a wall clock stepped back must not lock invalidation out for longer.
        return min(min_interval, max(0.0, last + min_interval - self.clock()))

    async def warm_up(self) -> None:
        """Collect every collector once, in parallel; return when all finished or timed out."""
        # Entries restored unexpired from a snapshot (warm restart) are not collected again.
        now = self.clock()
        tasks = [self.refresh(name) for name, entry in self.entries.items() if entry.expired(now)]
        if tasks:
            await asyncio.gather(*(asyncio.shield(t) for t in tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel in-flight refreshes (their tools' process groups are killed)."""
        self._closed = True
        tasks = [e.inflight for e in self.entries.values() if e.inflight is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
