"""GET /cache/stats and POST /cache/invalidate: the operators' view of the cache."""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web

from exporter.cache import MetricCache
from exporter.clock import Instant
from exporter.entry import EntryView
from exporter.handlers.targets import page_of, targets_stats
from exporter.keys import CACHE, CLOCK, PROBES, READY, RESPONSE_CACHE, SETTINGS

REFRESH_MODES = ("next", "now")


def _unix(instant: Instant | None) -> float | None:
    return None if instant is None else instant.wall


def entry_stats(entry: EntryView, now: Instant) -> dict[str, Any]:
    """JSON view of one collector's cache entry (times as Unix time)."""
    return {
        "status": entry.status(now).value,
        "refreshing": entry.refreshing,
        "interval_seconds": entry.interval,
        "timeout_seconds": entry.timeout,
        "collected_at": _unix(entry.collected_at),
        "expires_at": entry.expires_at.wall,
        "age_seconds": entry.age(now),
        "last_attempt_at": _unix(entry.last_attempt_at),
        "duration_seconds": entry.duration,
        "last_error": entry.last_error,
        "consecutive_failures": entry.consecutive_failures,
        "refreshes": dict(sorted(entry.refreshes.items())),
        "samples": entry.samples,
        "unreadable_items": entry.unreadable_items,
        "families": len(entry.families),
        "generation": entry.generation,
        "last_forced_at": _unix(entry.last_forced_at),
    }


async def stats(request: web.Request) -> web.Response:
    """Per-collector cache state, remote targets (paged) and response-cache counters as JSON."""
    app = request.app
    page = page_of(request.query)
    cache, now = app[CACHE], app[CLOCK].now()
    response_cache: dict[str, Any] = {"enabled": False}
    if app[SETTINGS].response_cache:
        response_cache = app[RESPONSE_CACHE].stats()
    body = {
        "now": now.wall,
        "ready": app[READY].is_set(),
        "generation": cache.generation,
        "collections_started": cache.collections_started,
        "collectors": {view.name: entry_stats(view, now) for view in cache.views()},
        "skipped": dict(app[SETTINGS].skipped),
        "response_cache": response_cache,
    }
    if PROBES in app:
        body["targets"] = targets_stats(app[PROBES], now, page, entry_stats)
    return web.json_response(body)


def _json_error(status: type[web.HTTPException], message: str, **extra: Any) -> web.HTTPException:
    return status(text=json.dumps({"error": message, **extra}), content_type="application/json")


def _checked(wanted: list[str], cache: MetricCache | None, what: str) -> list[str]:
    """``wanted`` when ``cache`` holds each of them; a JSON 400 naming the first it lacks."""
    for name in wanted:
        if cache is None or name not in cache:
            known = cache.names if cache is not None and what == "collector" else None
            extra = {"enabled": known} if known is not None else {}
            hint = " (see /cache/stats for cached targets)" if what == "target" else ""
            raise _json_error(
                web.HTTPBadRequest, f"unknown or disabled {what} {name[:300]!r}{hint}", **extra
            )
    return wanted


async def invalidate(request: web.Request) -> web.Response:
    """Expire all or ``?collector=`` entries and ``?target=`` remote targets (``module/host``);
    ``refresh=now`` recollects them immediately."""
    app = request.app
    cache, settings = app[CACHE], app[SETTINGS]
    if not settings.invalidate_enabled:
        raise _json_error(
            web.HTTPForbidden, "invalidation is disabled (--no-web.enable-invalidate)"
        )
    unknown_params = sorted(set(request.query) - {"collector", "target", "refresh"})
    if unknown_params:
        raise _json_error(
            web.HTTPBadRequest,
            f"unknown parameter {unknown_params[0][:64]!r}; "
            "use collector=, target= and refresh=next|now",
        )
    refresh = request.query.get("refresh", "next")
    if refresh not in REFRESH_MODES:
        raise _json_error(web.HTTPBadRequest, f"refresh must be one of {', '.join(REFRESH_MODES)}")
    remote = app[PROBES].cache if PROBES in app else None
    targets = _checked(list(dict.fromkeys(request.query.getall("target", []))), remote, "target")
    names = list(dict.fromkeys(request.query.getall("collector", [])))
    names = _checked(names, cache, "collector") if names or targets else cache.names
    limit = settings.invalidate_min_interval
    waits = {n: cache.forced_refresh_wait(n, limit) for n in names}
    target_waits = {t: remote.forced_refresh_wait(t, limit) for t in targets if remote}
    limited = {n: w for n, w in waits.items() if w > 0}
    limited_targets = {t: w for t, w in target_waits.items() if w > 0}
    if limited or limited_targets:
        retry_after = math.ceil(max([*limited.values(), *limited_targets.values()]))
        body = {
            "error": "forced refresh too soon; nothing was invalidated",
            "retry_after_seconds": retry_after,
            "collectors": {n: round(w, 3) for n, w in sorted(limited.items())},
        }
        if limited_targets:
            body["targets"] = {t: round(w, 3) for t, w in sorted(limited_targets.items())}
        raise web.HTTPTooManyRequests(
            text=json.dumps(body),
            content_type="application/json",
            headers={"Retry-After": str(retry_after)},
        )
    cache.invalidate(names, refresh_now=refresh == "now")
    if remote is not None and targets:
        remote.invalidate(targets, refresh_now=refresh == "now")
    reply: dict[str, Any] = {"invalidated": names, "refresh": refresh}
    if targets:
        reply["invalidated_targets"] = targets
    reply["generation"] = cache.generation
    return web.json_response(reply, status=202 if refresh == "now" else 200)
