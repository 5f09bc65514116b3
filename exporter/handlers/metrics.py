"""GET /metrics: negotiate once, replay a stored response, else render the cached families."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiohttp import web
from prometheus_client.metrics_core import Metric

from exporter.cache import MetricCache
from exporter.formats import Format, gzip_accepted, negotiate
from exporter.freshness import BuildInfo, Freshness
from exporter.keys import CACHE, CLOCK, PROBES, RENDERER, RESPONSE_CACHE, SETTINGS
from exporter.response_cache import VARY, CacheKey, Query, Rendered
from exporter.settings import Settings

SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
BUILD_INFO = BuildInfo()


@dataclass(frozen=True)
class Scrape:
    """A /metrics request as negotiated: sorted query, format, gzip, response-cache key."""

    query: Query
    fmt: Format
    gzip: bool
    key: CacheKey

    @classmethod
    def negotiate(cls, request: web.Request, accept: str, accept_encoding: str) -> Scrape:
        """Sort the query and pick the format and encoding."""
        query = tuple(sorted(request.query.items())) if request.query_string else ()
        fmt, gzip = negotiate(accept), gzip_accepted(accept_encoding)
        return cls(query, fmt, gzip, (query, fmt.content_type, "gzip" if gzip else ""))

    def values(self, name: str) -> list[str]:
        """The values of query parameter ``name`` (in sorted order)."""
        return [value for key, value in self.query if key == name]

    def headers(self) -> dict[str, str]:
        """Headers of the response."""
        headers = {"Content-Type": self.fmt.content_type, "Vary": VARY}
        if self.gzip:
            headers["Content-Encoding"] = "gzip"
        return headers


# Recent short requests (query string, Accept, Accept-Encoding) and their negotiation: a
# scrape repeats its request, and looking it up costs less than negotiating it again.
# At most 0.64 MB (measured with all 256 at 512 characters), outside the response cache.
RECENT: dict[tuple[str, str, str], Scrape] = {}
RECENT_MAX, RECENT_MAX_CHARS = 256, 512


def scrape_of(request: web.Request) -> Scrape:
    """Negotiate ``request`` once (the only place that reads its query and headers)."""
    headers = request.headers
    raw = (request.query_string, headers.get("Accept", ""), headers.get("Accept-Encoding", ""))
    scrape = RECENT.get(raw)
    if scrape is None:
        scrape = Scrape.negotiate(request, raw[1], raw[2])
        if len(raw[0]) + len(raw[1]) + len(raw[2]) <= RECENT_MAX_CHARS:
            if len(RECENT) >= RECENT_MAX:
                del RECENT[next(iter(RECENT))]  # the oldest
            RECENT[raw] = scrape
    return scrape


def select_collectors(wanted: Scrape, cache: MetricCache) -> list[str]:
    """Apply ``collect[]``/``exclude[]``; raise 400 for unknown names or both at once."""
    collect = wanted.values("collect[]")
    exclude = wanted.values("exclude[]")
    if collect and exclude:
        raise web.HTTPBadRequest(text="collect[] and exclude[] cannot be combined\n")
    enabled = cache.names
    for name in (*collect, *exclude):
        if name not in cache:
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


async def render(request: web.Request, scrape: Scrape) -> Rendered:
    """The body of the selected collectors' cached families plus the framework block."""
    app = request.app
    cache, settings = app[CACHE], app[SETTINGS]
    names = select_collectors(scrape, cache)
    await cache.fresh(names, scrape_wait(request, settings))
    entries = cache.views(names)
    # Read on the loop before rendering: a refresh committed meanwhile is not in this body.
    generation = cache.generation
    valid_until = min((e.expires_at.mono for e in entries), default=app[CLOCK].monotonic())
    framework: list[Metric] = [
        *Freshness(entries, app[CLOCK]).collect(),
        *BUILD_INFO.collect(),
        *(app[RESPONSE_CACHE].collect() if settings.response_cache else ()),
        *(app[PROBES].collect() if PROBES in app else ()),
    ]
    renderer = app[RENDERER]
    names_wanted = frozenset(scrape.values("name[]"))
    body = renderer.body(entries, scrape.fmt, framework, scrape.gzip, names_wanted)
    data = await renderer.compose(body)
    return Rendered(data, scrape.headers(), generation, valid_until)


async def metrics(request: web.Request) -> web.Response:
    """Serve the selected collectors' cached families plus freshness metrics."""
    app = request.app
    scrape = scrape_of(request)
    if not app[SETTINGS].response_cache:
        rendered = await render(request, scrape)
        return web.Response(body=rendered.body, headers=rendered.headers)
    response_cache, cache = app[RESPONSE_CACHE], app[CACHE]
    stored = response_cache.get(scrape.key, cache.generation)
    if stored is not None:
        return stored
    rendered = await render(request, scrape)
    response_cache.put(scrape.key, rendered, cache.generation)
    headers = {**rendered.headers, "X-Hwcache-Response": "miss"}
    return web.Response(body=rendered.body, headers=headers)
