"""The process-wide metric cache: one entry per collector, expiry, single-flight refresh."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from cachetools import LRUCache
from prometheus_client.metrics_core import Metric

from collectors.base import Collector, NotApplicable, Skipped
from exporter.clock import Clock, Instant, system_clock
from exporter.entry import EntryView, Result, Status
from exporter.families import BUILTIN, FamilyError, Namespace, check_families

log = logging.getLogger(__name__)


class CacheEntry:
    """A collector's place in the cache: how to refresh it, and its current view."""

    def __init__(
        self,
        name: str,
        collector: Collector,
        interval: float,
        timeout: float,
        namespace: Namespace = BUILTIN,  # family names it may serve (scripts: their own)
    ) -> None:
        self.collector = collector
        self.namespace = namespace
        self.view = EntryView(name, interval, timeout)
        self.inflight: asyncio.Task[None] | None = None
        self.invalidations = 0  # a refresh that sees this change was invalidated meanwhile
        self.refresh_again = False


@dataclass(frozen=True)
class Checked:
    """Families that passed ``MetricCache.check``, with their pre-rendered bodies."""

    families: tuple[Metric, ...]
    renders: dict[str, bytes]
    samples: int
    skipped: Skipped = field(default_factory=Skipped)


class MetricCache:
    """One per process: holds every collector's families for the life of the process."""

    def __init__(
        self,
        entries: Iterable[CacheEntry],
        clock: Clock = system_clock,
        error_retry_interval: float = 60.0,
    ) -> None:
        self._entries = {entry.view.name: entry for entry in entries}
        self.clock = clock
        self.error_retry_interval = error_retry_interval
        self.generation = 0
        self.collections_started = 0
        self._listeners: list[Callable[[EntryView], None]] = []
        # Encodes an entry's new families off the event loop; raises if they cannot be exposed
        # (set by the app: exporter/render.py). Its bodies by format seed the entry's renders.
        self.prerender: Callable[[str, Sequence[Metric]], dict[str, bytes]] | None = None
        self._closed = False

    @property
    def names(self) -> list[str]:
        """Collector names, in the order they were configured."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def view(self, name: str) -> EntryView:
        """The current view of ``name``'s entry."""
        return self._entries[name].view

    def views(self, names: Iterable[str] | None = None) -> list[EntryView]:
        """Current views of ``names`` (default: every entry)."""
        return [self._entries[n].view for n in (self._entries if names is None else names)]

    def inflight(self, name: str) -> asyncio.Task[None] | None:
        """The refresh of ``name`` in flight, if any."""
        return self._entries[name].inflight

    def on_change(self, listener: Callable[[EntryView], None]) -> None:
        """Call ``listener(view)`` after every data change (refresh, restore, invalidate)."""
        self._listeners.append(listener)

    def _publish(self, entry: CacheEntry, view: EntryView, renders: Mapping[str, bytes]) -> None:
        """Store ``view`` as a data change: next generation, fresh renders, listeners told."""
        self.generation += 1
        rendered: LRUCache[str, bytes] = LRUCache(maxsize=16)
        rendered.update(renders)
        entry.view = replace(view, generation=self.generation, rendered=rendered)
        for listener in self._listeners:
            try:
                listener(entry.view)
            except Exception:
                log.exception("cache change listener failed for %s", view.name)

    def refresh(self, name: str) -> asyncio.Task[None]:
        """Start a refresh of ``name`` unless one is already in flight (single-flight)."""
        entry = self._entries[name]
        if entry.inflight is None:
            self.collections_started += 1
            entry.inflight = asyncio.create_task(self._run(entry), name=f"refresh-{name}")
            entry.view = replace(entry.view, refreshing=True)
        return entry.inflight

    async def fresh(self, names: Iterable[str], wait: float) -> None:
        """Refresh what is due among ``names``, waiting at most ``wait`` seconds for it."""
        now, tasks = self.clock.now(), []
        for name in names:
            entry = self._entries[name]
            if entry.inflight is None and entry.view.expired(now) and not self._closed:
                self.refresh(name)
            if entry.inflight is not None:
                tasks.append(entry.inflight)
        if tasks and wait > 0:
            # asyncio.wait never cancels them: a scrape that gives up leaves refreshes running.
            await asyncio.wait(tasks, timeout=wait)

    async def _run(self, entry: CacheEntry) -> None:
        started, timer = self.clock.now(), time.perf_counter()
        entry.view = replace(entry.view, last_attempt_at=started)
        invalidations = entry.invalidations
        entry.collector.take_skipped()  # left over from a collection that timed out
        try:
            async with asyncio.timeout(entry.view.timeout):
                families = tuple(await entry.collector.collect())
                skipped = entry.collector.take_skipped()
                checked = replace(await self.check(entry.view.name, families), skipped=skipped)
        except NotApplicable as exc:
            self._finish(entry, timer, Result.NOT_APPLICABLE, str(exc) or "not applicable")
        except TimeoutError:
            self._finish(entry, timer, Result.TIMEOUT, f"timed out after {entry.view.timeout:g}s")
        except asyncio.CancelledError:
            entry.inflight = None
            entry.view = replace(entry.view, refreshing=False)
            raise
        except Exception as exc:
            error = str(exc) if isinstance(exc, FamilyError) else f"{type(exc).__name__}: {exc}"
            self._finish(entry, timer, Result.ERROR, error)
        else:
            try:
                self.commit(entry.view.name, checked, lambda v: self._outcome(v, timer, None))
            except FamilyError as exc:
                self._finish(entry, timer, Result.ERROR, str(exc))
        entry.inflight = None
        if entry.invalidations != invalidations:
            # Invalidated while this refresh read the hardware: its data predates the request.
            entry.view = replace(entry.view, expires_at=self.clock.now())
            if entry.refresh_again and not self._closed:
                entry.refresh_again = False
                self.refresh(entry.view.name)

    async def check(self, name: str, families: Sequence[object], restored: bool = False) -> Checked:
        """Validate and pre-render families in a worker thread; FamilyError if unservable."""
        namespace, prerender, given = self._entries[name].namespace, self.prerender, tuple(families)
        # Restored families did not come from the collector's code: they must be ones it owns.
        prefixes = namespace.owned(name) if restored else None

        def blocking() -> Checked:
            check_families(given, prefixes, namespace)
            valid = tuple(f for f in given if isinstance(f, Metric))
            try:
                renders = prerender(name, valid) if prerender is not None else {}
            except Exception as exc:
                raise FamilyError(f"cannot be exposed: {type(exc).__name__}: {exc}") from exc
            return Checked(valid, renders, sum(len(f.samples) for f in valid))

        return await asyncio.to_thread(blocking)

    def commit(self, name: str, checked: Checked, stamp: Callable[[EntryView], EntryView]) -> None:
        """Store checked families (refresh or restore) unless another collector serves one.

        ``stamp`` gives the view its state and timestamps. No await between the clash check
        and the store, so concurrent commits cannot race.
        """
        entry = self._entries[name]
        clash = self._clash(entry, checked.families)
        if clash:
            raise FamilyError(clash)
        skipped = checked.skipped
        view = replace(
            entry.view,
            families=checked.families,
            samples=checked.samples,
            unreadable_items=skipped.count,
        )
        if skipped.count:
            log.warning("collector %s: %s", name, skipped)
        self._publish(entry, stamp(view), checked.renders)

    def _clash(self, entry: CacheEntry, families: tuple[Metric, ...]) -> str | None:
        """An error message if another collector already serves one of these family names."""
        names = {family.name for family in families}
        for other in self._entries.values():
            served = other.view.families if other is not entry else ()
            clash = names.intersection(f.name for f in served)
            if clash:
                return f"family {min(clash)} is already served by collector {other.view.name}"
        return None

    def _finish(self, entry: CacheEntry, timer: float, result: Result, error: str) -> None:
        self._publish(entry, self._outcome(entry.view, timer, error, result), {})

    def _outcome(
        self, view: EntryView, timer: float, error: str | None, result: Result = Result.SUCCESS
    ) -> EntryView:
        """``view`` after a refresh that ended in ``result``, started at perf counter ``timer``."""
        now = self.clock.now()
        refreshes = {**view.refreshes, result.value: view.refreshes.get(result.value, 0) + 1}
        view = replace(
            view,
            duration=time.perf_counter() - timer,
            refreshes=refreshes,
            refreshing=False,
            expires_at=self._expiry(view, now, result),
            last_error=error,
        )
        if result is Result.SUCCESS:
            return replace(view, state=Status.OK, collected_at=now, consecutive_failures=0)
        if result is Result.NOT_APPLICABLE:
            if view.state is not Status.NOT_APPLICABLE:
                log.info("collector %s: not_applicable: %s", view.name, error)
            na = Status.NOT_APPLICABLE
            return replace(view, state=na, families=(), samples=0, unreadable_items=0)
        log.warning("collector %s: error: %s; serving the last good data", view.name, error)
        failures = view.consecutive_failures + 1
        return replace(view, state=Status.ERROR, consecutive_failures=failures)

    def _expiry(self, view: EntryView, now: Instant, result: Result) -> Instant:
        """When the next refresh is due: after the interval, or sooner to retry a failure."""
        if result in (Result.SUCCESS, Result.NOT_APPLICABLE):
            return now.after(view.interval)
        return now.after(min(view.interval, self.error_retry_interval))

    def invalidate(self, names: Iterable[str], refresh_now: bool) -> None:
        """Expire entries (keeping their data as stale); optionally refresh them now.

        A refresh already in flight started before the request, so its data does not count:
        the entry stays expired and ``refresh_now`` collects again once it is done.
        """
        now = self.clock.now()
        for name in names:
            entry = self._entries[name]
            entry.invalidations += 1
            self._publish(entry, replace(entry.view, expires_at=now, last_forced_at=now), {})
            if refresh_now and not self._closed:
                if entry.inflight is None:
                    self.refresh(name)
                else:
                    entry.refresh_again = True

    def forced_refresh_wait(self, name: str, min_interval: float) -> float:
        """Seconds until ``name`` may be force-refreshed again (0 when allowed now)."""
        last = self._entries[name].view.last_forced_at
        if last is None:
            return 0.0
        return max(0.0, last.mono + min_interval - self.clock.monotonic())

    async def warm_up(self) -> None:
        """Collect every collector once, in parallel; return when all finished or timed out."""
        # Entries restored unexpired from a snapshot (warm restart) are not collected again.
        now = self.clock.now()
        expired = [name for name, entry in self._entries.items() if entry.view.expired(now)]
        tasks = [self.refresh(name) for name in expired]
        if tasks:
            await asyncio.wait(tasks)  # cancelling the warm-up leaves them to close()

    async def close(self) -> None:
        """Cancel in-flight refreshes (their tools' process groups are killed)."""
        self._closed = True
        tasks = [e.inflight for e in self._entries.values() if e.inflight is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
