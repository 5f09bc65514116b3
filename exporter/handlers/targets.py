"""Remote targets in /cache/stats and on the landing page: counts by status plus one page."""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from exporter.clock import Instant
from exporter.entry import EntryView, Status
from exporter.probe_cache import ProbeCache

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
STATUSES = tuple(Status)
# The landing page lists problems first: a failing BMC among thousands must be visible.
STATUS_ORDER = {Status.ERROR: 0, Status.STALE: 1, Status.PENDING: 2, Status.OK: 3}


@dataclass(frozen=True)
class Page:
    """Which targets a request asks for: ``?offset=&limit=&status=``."""

    offset: int = 0
    limit: int = DEFAULT_LIMIT
    status: str | None = None


def page_of(query: Mapping[str, str]) -> Page:
    """The page a query asks for; a JSON 400 when a value is malformed."""
    offset, limit = query.get("offset", "0"), query.get("limit", str(DEFAULT_LIMIT))
    status = query.get("status") or None
    if not offset.isdigit() or not limit.isdigit() or not 0 < int(limit) <= MAX_LIMIT:
        raise _bad(f"offset must be an integer >= 0 and limit an integer in 1-{MAX_LIMIT}")
    if status is not None and status not in STATUSES:
        raise _bad(f"status must be one of {', '.join(STATUSES)}")
    return Page(int(offset), int(limit), status)


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def split_name(name: str) -> tuple[str, str]:
    """(module, target) of an entry name ``module/target`` (a target has no ``/``)."""
    module, _, target = name.rpartition("/")
    return module, target


def by_status(views: Iterable[EntryView], now: Instant) -> dict[str, int]:
    """How many targets are in each status."""
    return dict(sorted(Counter(v.status(now).value for v in views).items()))


EntryStats = Callable[[EntryView, Instant], dict[str, Any]]


def targets_stats(
    probes: ProbeCache, now: Instant, page: Page, stats: EntryStats
) -> dict[str, Any]:
    """The summary and one page of targets, sorted by name; ``stats`` renders one entry."""
    views = probes.cache.views()
    chosen = sorted(
        (v for v in views if page.status in (None, v.status(now))), key=lambda v: v.name
    )
    items = {}
    for view in chosen[page.offset : page.offset + page.limit]:
        module, target = split_name(view.name)
        items[view.name] = {"module": module, "target": target, **stats(view, now)}
    return {
        "total": len(views),
        "max_targets": probes.config.max_targets,
        "evictions": probes.evictions,
        "by_status": by_status(views, now),
        "matching": len(chosen),
        "offset": page.offset,
        "limit": page.limit,
        "items": items,
    }


def worst_first(views: Iterable[EntryView], now: Instant, limit: int) -> list[EntryView]:
    """The first ``limit`` targets, failing ones first, then by name."""
    return heapq.nsmallest(limit, views, key=lambda v: (STATUS_ORDER.get(v.status(now), 4), v.name))
