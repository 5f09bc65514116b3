"""The landing page and the health endpoints."""

from __future__ import annotations

import html
import time

from aiohttp import web

from collectors.toolkit.durations import format_duration
from exporter import __version__
from exporter.clock import Instant
from exporter.entry import EntryView, Status
from exporter.handlers.targets import by_status, worst_first
from exporter.keys import CACHE, CLOCK, PROBES, READY, SETTINGS

# Short cells never wrap; only the message column wraps, at any character if it must. When
# the window is too narrow the table scrolls sideways inside its own region, with the
# collector name and the message column held in view (sticky cells need opaque backgrounds).
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em 2em;color:#222}
@media (max-width:60em){body{margin:1em}}
h1{font-size:1.6em;margin:.2em 0 .5em}h2{font-size:1.25em;margin:1.2em 0 .4em}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:separate;border-spacing:0}
th,td{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top;
background:#fff}
th{background:#f4f4f4;white-space:nowrap}
.name,.status,.t{white-space:nowrap}td.num{text-align:right}
.status{font-weight:600}.status span{padding:.05em .4em;border-radius:3px}
.ok{color:#17803d}.stale,.pending{color:#8a4f00}
tr.refreshing .status span::after{content:" \\21bb"}
.error span{color:#fff;background:#c62828}
.not_applicable,.skipped{color:#5f6368;font-weight:normal}
.msg{min-width:16em;max-width:40em;overflow-wrap:anywhere}
.msg.err{color:#c62828}.msg.note{color:#5f6368}
tr.inactive td.name{color:#5f6368}
@media (max-width:72em){
th:first-child,td.name{position:sticky;left:0;box-shadow:inset -1px 0 #ddd}
th:last-child,td.msg{position:sticky;right:0;box-shadow:inset 1px 0 #ddd}}
"""

_COLUMNS = (
    "Collector",
    "Status",
    "Last success (UTC)",
    "Age",
    "Next refresh (UTC)",
    "Duration",
    "Interval",
    "Note / last error",
)
# Classes of the value cells between status and message: last success, age, next refresh,
# duration, interval (the amounts line up on the right).
_VALUE_CLASSES = ("t", "t num", "t", "t num", "t num")
_INACTIVE = {"not_applicable", "skipped"}
TARGETS_SHOWN = 50  # the rest is in /cache/stats, paged


def _when(moment: Instant | None) -> str:
    if moment is None or moment.wall <= 0:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment.wall))


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 600:
        return f"{value:.1f} s"
    return f"{value / 60:.0f} min" if value < 7200 else f"{value / 3600:.1f} h"


def _tr(
    name: str,
    status: str,
    values: tuple[str, ...],
    message: str,
    kind: str,
    row: str = "collector",
    busy: bool = False,
) -> str:
    """One table row; ``kind`` is ``note`` (grey) or ``err`` (red); ``busy``: refreshing now."""
    label = status.replace("_", " ")
    cells = [
        f'<td class="name">{html.escape(name)}</td>',
        f'<td class="status {status}"><span>{label}</span></td>',
        *(f'<td class="{cls}">{v}</td>' for cls, v in zip(_VALUE_CLASSES, values, strict=True)),
        f'<td class="msg {kind}">{html.escape(message)}</td>',
    ]
    classes = [c for c, on in (("inactive", status in _INACTIVE), ("refreshing", busy)) if on]
    attrs = f' class="{" ".join(classes)}"' if classes else ""
    attrs += ' title="refreshing now"' if busy else ""
    return f'<tr id="{row}-{html.escape(name)}"{attrs}>{"".join(cells)}</tr>'


def _row(entry: EntryView, now: Instant, row: str = "collector") -> str:
    values = (
        _when(entry.collected_at),
        _seconds(entry.age(now)),
        _when(entry.expires_at),
        _seconds(entry.duration),
        format_duration(entry.interval),
    )
    # "Not applicable here" (no such hardware) is a note, not a failure.
    kind = "note" if entry.state is Status.NOT_APPLICABLE else "err"
    message = entry.last_error or ""
    return _tr(entry.name, entry.status(now), values, message, kind, row, entry.refreshing)


def _targets(app: web.Application, now: Instant) -> str:
    """Remote targets: counts by status, then the first few (failing ones first)."""
    if PROBES not in app:
        return ""
    probes = app[PROBES]
    views = probes.cache.views()
    counts = " · ".join(
        f"{status.replace('_', ' ')} {n}" for status, n in by_status(views, now).items()
    )
    shown = worst_first(views, now, TARGETS_SHOWN)
    rows = "\n".join(_row(view, now, "target") for view in shown)
    more = ""
    if len(views) > len(shown):
        more = (
            f"<p>{len(shown)} of {len(views)} shown; all of them, paged: "
            '<a href="/cache/stats?limit=100">/cache/stats</a>, failing ones: '
            '<a href="/cache/stats?status=error">?status=error</a></p>'
        )
    head = "".join(f'<th scope="col">{title}</th>' for title in ("Module/target", *_COLUMNS[1:]))
    return f"""<h2>Remote targets</h2>
<p id="target-counts">{len(views)} cached (at most {probes.config.max_targets}),
{probes.evictions} evicted{": " + counts if counts else ""}</p>
<div class="scroll" role="region" aria-label="Remote targets" tabindex="0">
<table id="targets"><thead><tr>{head}</tr></thead>
<tbody>
{rows}
</tbody></table></div>
{more}"""


async def landing(request: web.Request) -> web.Response:
    """Server-rendered page: link to /metrics and a live table of collectors."""
    app = request.app
    cache, now, settings = app[CACHE], app[CLOCK].now(), app[SETTINGS]
    path = html.escape(settings.telemetry_path)
    rows = [_row(view, now) for view in cache.views()]
    rows += [_tr(name, "skipped", ("",) * 5, why, "note") for name, why in settings.skipped]
    head = "".join(f'<th scope="col">{title}</th>' for title in _COLUMNS)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hwcache-exporter</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="30"><style>{_STYLE}</style></head>
<body><h1>hwcache-exporter {__version__}</h1>
<p><a id="metrics-link" href="{path}">Metrics</a> ·
<a href="/cache/stats">Cache stats (JSON)</a> ·
<a href="/-/ready">Readiness</a></p>
<div class="scroll" role="region" aria-label="Collectors" tabindex="0">
<table id="collectors"><thead><tr>{head}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></div>
{_targets(app, now)}
<p>Generation {cache.generation} · page rendered {_when(now)} UTC</p>
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
