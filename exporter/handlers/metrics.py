"""GET /metrics: cached families, refreshed when due, waited for until the scrape deadline."""

from __future__ import annotations

import gzip
import math

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import gzip_accepted
from prometheus_client.metrics_core import Metric

from exporter.cache import CacheEntry, MetricCache
from exporter.freshness import build_info_family, freshness_families
from exporter.keys import BODY_CRCS, CACHE, CLOCK, FRAMEWORK_RENDERS, RESPONSE_CACHE, SETTINGS
from exporter.render import Format, encode, negotiate, render_body, render_filtered
from exporter.response_cache import GENERATION, VALID_UNTIL
from exporter.settings import Settings

SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"


def select_collectors(request: web.Request, cache: MetricCache) -> list[str]:
    """Apply ``collect[]``/``exclude[]``; raise 400 for unknown names or both at once."""
    collect = request.query.getall("collect[]", [])
    exclude = request.query.getall("exclude[]", [])
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
        wanted = set(collect)
        return [name for name in enabled if name in wanted]
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
            "Bytes held by the response cache.",
            value=response_cache.store.currsize,
        )
    )
    return families


def framework_bytes(
    request: web.Request, entries: list[CacheEntry], fmt: Format, now: float
) -> bytes:
    """Freshness and build info, rendered at most once per second per generation and format."""
    app = request.app
    cache = app[CACHE]
    key = (cache.generation, fmt.content_type, tuple(e.name for e in entries), int(now))
    store = app[FRAMEWORK_RENDERS]
    body = store.get(key)
    if body is None:
        body = encode([*freshness_families(entries, now), build_info_family()], fmt)
        store[key] = body
    response_cache = response_cache_families(app)
    return body + encode(response_cache, fmt) if response_cache else body


async def metrics(request: web.Request) -> web.Response:
    """Serve the selected collectors' cached families plus freshness metrics."""
    app = request.app
    cache, settings, clock = app[CACHE], app[SETTINGS], app[CLOCK]
    names = select_collectors(request, cache)
    name_filter = request.query.getall("name[]", [])
    await cache.fresh(names, scrape_wait(request, settings))

    now = clock()
    entries = [cache.entries[name] for name in names]
    fmt = negotiate(request.headers.get("Accept", ""))
    compress = gzip_accepted(request.headers.get("Accept-Encoding", ""))
    if name_filter:
        framework = [
            *freshness_families(entries, now),
            build_info_family(),
            *response_cache_families(app),
        ]
        body = render_filtered(entries, framework, fmt, frozenset(name_filter))
        body = gzip.compress(body, compresslevel=6) if compress else body
    else:
        crcs = app[BODY_CRCS]
        body = render_body(
            entries, framework_bytes(request, entries, fmt, now), fmt, compress, crcs
        )
    headers = {"Content-Type": fmt.content_type}
    if compress:
        headers["Content-Encoding"] = "gzip"
    request[GENERATION] = cache.generation
    request[VALID_UNTIL] = min((e.expires_at for e in entries), default=now)
    return web.Response(body=body, headers=headers)
