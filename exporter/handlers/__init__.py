"""HTTP endpoints of the exporter."""

from __future__ import annotations

from aiohttp import web

from exporter.connections import tracked
from exporter.handlers.cache_api import invalidate, stats
from exporter.handlers.metrics import metrics
from exporter.handlers.pages import healthy, landing, ready
from exporter.handlers.probe import probe
from exporter.limits import RequestLimiter


def routes(telemetry_path: str, limited: RequestLimiter) -> list[web.AbstractRouteDef]:
    """Route table: every handler is ``tracked`` (and writes its response there); those that do
    work are ``limited`` too, around it, so a slow reader keeps its request slot.

    The health probes are never limited; /probe is bounded by its polls' limits instead (a
    scrape waiting for a slow BMC is not work). /cache/invalidate is POST-only (aiohttp
    answers 405 otherwise).
    """
    return [
        web.get(telemetry_path, limited(tracked(metrics))),
        web.get("/probe", tracked(probe)),
        web.get("/cache/stats", limited(tracked(stats))),
        web.post("/cache/invalidate", limited(tracked(invalidate))),
        web.get("/", limited(tracked(landing))),
        web.get("/-/healthy", tracked(healthy)),
        web.get("/-/ready", tracked(ready)),
    ]
