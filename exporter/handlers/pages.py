"""The landing page and the health endpoints."""

from __future__ import annotations

import html
import time

from aiohttp import web

from exporter import __version__
from exporter.cache import CacheEntry
from exporter.durations import format_duration
from exporter.keys import CACHE, CLOCK, READY, SETTINGS

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}th,td{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}
th{background:#f4f4f4}.ok{color:#17803d}.stale,.refreshing,.pending{color:#a15c00}
.error{color:#fff;background:#c62828;font-weight:bold}.not_applicable{color:#777}
td.err{color:#c62828;max-width:40em;overflow-wrap:anywhere}td.t{white-space:nowrap}
"""


def _when(timestamp: float | None) -> str:
    if timestamp is None or timestamp <= 0:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 600:
        return f"{value:.1f} s"
    return f"{value / 60:.0f} min" if value < 7200 else f"{value / 3600:.1f} h"


def _row(entry: CacheEntry, now: float) -> str:
    status = entry.status(now)
    age = None if entry.collected_at is None else now - entry.collected_at
    cells = [
        f'<td class="name">{html.escape(entry.name)}</td>',
        f'<td class="status {status}">{status}</td>',
        f'<td class="t">{_when(entry.collected_at)}</td>',
        f"<td>{_seconds(age)}</td>",
        f'<td class="t">{_when(entry.expires_at)}</td>',
        f"<td>{_seconds(entry.duration)}</td>",
        f"<td>{format_duration(entry.interval)}</td>",
        f'<td class="err">{html.escape(entry.last_error or "")}</td>',
    ]
    return f'<tr id="collector-{html.escape(entry.name)}">{"".join(cells)}</tr>'


async def landing(request: web.Request) -> web.Response:
    """Server-rendered page: link to /metrics and a live table of collectors."""
    app = request.app
    cache, now = app[CACHE], app[CLOCK]()
    path = html.escape(app[SETTINGS].telemetry_path)
    rows = "\n".join(_row(entry, now) for entry in cache.entries.values())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hwcache-exporter</title>
<meta http-equiv="refresh" content="30"><style>{_STYLE}</style></head>
<body><h1>hwcache-exporter {__version__}</h1>
<p><a id="metrics-link" href="{path}">Metrics</a> ·
<a href="/cache/stats">Cache stats (JSON)</a> ·
<a href="/-/ready">Readiness</a></p>
<table id="collectors"><thead><tr><th>Collector</th><th>Status</th><th>Last success</th>
<th>Age</th><th>Next refresh</th><th>Duration</th><th>Interval</th><th>Last error</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<p>Generation {cache.generation} · page rendered {_when(now)}</p>
</body></html>
"""
    return web.Response(text=page, content_type="text/html")


async def healthy(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP."""
    return web.Response(text="Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    """Readiness: 200 once the initial collection finished or timed out."""
    if request.app[READY].is_set():
        return web.Response(text="Ready.\n")
    return web.Response(status=503, text="Not ready: initial collection in progress.\n")
