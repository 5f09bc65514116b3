"""GET /metrics: cached families, refreshed when due, waited for until the scrape deadline."""

from __future__ import annotations

import functools
import math

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.cache import CacheEntry, MetricCache
from exporter.freshness import build_info_family, freshness_families
from exporter.keys import BODY_CRCS, CACHE, CLOCK, FRAMEWORK_RENDERS, RESPONSE_CACHE, SETTINGS
from exporter.render import Body, in_worker, render_filtered
from exporter.response_cache import CANONICAL, GENERATION, VALID_UNTIL, VARY, Canonical
from exporter.settings import Settings

SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"


def select_collectors(wanted: Canonical, cache: MetricCache) -> list[str]:
    """Apply ``collect[]``/``exclude[]``; raise 400 for unknown names or both at once."""
    collect = wanted.values("collect[]")
    exclude = wanted.values("exclude[]")
    if collect and exclude:
        raise web.HTTPBadRequest(text="collect[] and exclude[] cannot be combined\n")
    enabled = list(cache.entries)
    for name in (*collect, *exclude):
        if name not in cache.entries:
            raise web.HTTPBadRequest(
                text=f"unknown or disabled collector {name[:64]!r}; "
                f"enabled collectors: {', '.join(enabled)}\n"
            )
    if collect:
        chosen = set(collect)
        return [name for name in enabled if name in chosen]
    return [name for name in enabled if name not in set(exclude)]


def scrape_wait(request: web.Request, settings: Settings) -> float:
    """How long this scrape may wait for refreshes: the scrape timeout minus an offset, capped."""
    wait = settings.max_scrape_wait
    header = request.headers.get(SCRAPE_TIMEOUT_HEADER)
    if header:
        try:
            timeout = float(header)
        except ValueError:
            timeout = math.nan
        if math.isfinite(timeout) and timeout > 0:
            wait = min(wait, timeout - settings.scrape_timeout_offset)
    return max(0.0, wait)


def response_cache_families(app: web.Application) -> list[Metric]:
    """``hwcache_response_cache_*`` families (none when the response cache is off)."""
    if not app[SETTINGS].response_cache:
        return []
    response_cache = app[RESPONSE_CACHE]
    families: list[Metric] = []
    for name, value, doc in (
        ("hits", response_cache.hits, "Scrapes answered from the response cache."),
        ("misses", response_cache.misses, "Scrapes not found in the response cache."),
        ("evictions", response_cache.store.evictions, "Responses evicted to stay in bounds."),
    ):
        families.append(CounterMetricFamily(f"hwcache_response_cache_{name}", doc, value=value))
    families.append(
        GaugeMetricFamily(
            "hwcache_response_cache_bytes",
            "Bytes held by the response cache: responses and remembered request keys.",
            value=response_cache.bytes,
        )
    )
    return families


async def full_body(
    request: web.Request, entries: list[CacheEntry], canonical: Canonical, now: float
) -> bytes:
    """Collectors' reused bytes plus freshness (rendered at most once per second) and counters."""
    app = request.app
    fmt = canonical.fmt
    key = (app[CACHE].generation, fmt.body_key, tuple(e.name for e in entries), int(now))
    renders = app[FRAMEWORK_RENDERS]
    framework = renders.get(key) or [*freshness_families(entries, now), build_info_family()]
    crcs = app[BODY_CRCS]
    body = Body.of(entries, fmt, canonical.gzip, framework, response_cache_families(app), crcs)
    # Only joining cached bytes stays on the loop; anything to render goes to a worker.
    data = body.compose() if body.rendered else await in_worker(body.compose)
    body.keep(crcs)
    if body.framework is not None:
        renders[key] = body.framework
    return data


async def metrics(request: web.Request) -> web.Response:
    """Serve the selected collectors' cached families plus freshness metrics."""
    app = request.app
    cache, settings, clock = app[CACHE], app[SETTINGS], app[CLOCK]
    canonical = request.get(CANONICAL) or await app[RESPONSE_CACHE].canonical(request)
    names = select_collectors(canonical, cache)
    name_filter = frozenset(canonical.values("name[]"))
    await cache.fresh(names, scrape_wait(request, settings))

    now = clock()
    entries = [cache.entries[name] for name in names]
    # Taken before rendering: a refresh committed meanwhile is not in this body.
    request[GENERATION] = cache.generation
    request[VALID_UNTIL] = min((e.expires_at for e in entries), default=now)
    fmt = canonical.fmt
    if name_filter:
        families = [
            *(f for e in entries for f in e.families),
            *freshness_families(entries, now),
            build_info_family(),
            *response_cache_families(app),
        ]
        body = await in_worker(
            functools.partial(render_filtered, families, fmt, name_filter, canonical.gzip)
        )
    else:
        body = await full_body(request, entries, canonical, now)
    headers = {"Content-Type": fmt.content_type, "Vary": VARY}
    if canonical.gzip:
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)
