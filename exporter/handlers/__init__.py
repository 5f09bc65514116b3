"""HTTP endpoints of the exporter."""

from __future__ import annotations

from aiohttp import web

from exporter.handlers.cache_api import invalidate, stats
from exporter.handlers.metrics import metrics
from exporter.handlers.pages import healthy, landing, ready
from exporter.handlers.probe import probe
from exporter.limits import RequestLimiter


def routes(telemetry_path: str, limited: RequestLimiter) -> list[web.AbstractRouteDef]:
    """Route table: the handlers that do work are ``limited``; the health probes never are.

    /probe is bounded by its polls' limits instead (a scrape waiting for a slow BMC is not
    work). /cache/invalidate is POST-only (aiohttp answers 405 otherwise).
    """
    return [
        web.get(telemetry_path, limited(metrics)),
        web.get("/probe", probe),
        web.get("/cache/stats", limited(stats)),
        web.post("/cache/invalidate", limited(invalidate)),
        web.get("/", limited(landing)),
        web.get("/-/healthy", healthy),
        web.get("/-/ready", ready),
    ]
