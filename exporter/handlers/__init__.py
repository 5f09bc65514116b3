"""HTTP endpoints of the exporter."""

from __future__ import annotations

from aiohttp import web

from exporter.handlers.cache_api import invalidate, stats
from exporter.handlers.metrics import metrics
from exporter.handlers.pages import healthy, landing, ready


def routes(telemetry_path: str) -> list[web.AbstractRouteDef]:
    """Route table; /cache/invalidate is POST-only (aiohttp answers 405 otherwise)."""
    return [
        web.get(telemetry_path, metrics),
        web.get("/cache/stats", stats),
        web.post("/cache/invalidate", invalidate),
        web.get("/", landing),
        web.get("/-/healthy", healthy),
        web.get("/-/ready", ready),
    ]
