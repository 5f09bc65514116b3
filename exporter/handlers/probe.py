"""GET /probe?target=HOST[:PORT]&module=NAME: a remote target's cached metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from exporter.clock import Instant
from exporter.entry import EntryView
from exporter.freshness import freshness_families
from exporter.handlers.metrics import scrape_wait
from exporter.keys import CLOCK, PROBES, SETTINGS
from exporter.limits import check_query_size
from exporter.probe_cache import ProbeBusy
from exporter.probe_config import ProbeModule
from exporter.probe_target import Target, parse_target
from exporter.render import Families

HIT = {"X-Hwcache-Response": "hit"}
MISS = {"X-Hwcache-Response": "miss"}


def _bad(text: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=text + "\n")


def checked_probe(request: web.Request) -> tuple[ProbeModule, Target]:
    """The module and target of a request; 400 (before any connection) when not allowed."""
    if PROBES not in request.app:
        raise web.HTTPNotFound(text="no remote modules configured (--config.file)\n")
    config = request.app[PROBES].config
    name = request.query.get("module", "")
    module = config.modules.get(name)
    if module is None:
        known = ", ".join(sorted(config.modules))
        raise _bad(f"unknown module {name[:64]!r}; configured modules: {known}")
    try:
        target = parse_target(request.query.get("target", ""))
    except ValueError as exc:
        raise _bad(str(exc)) from None
    if not module.allows(target):
        raise _bad(f"target {target} is not in the allow-list of module {module.name!r}")
    return module, target


def target_freshness(
    entry: EntryView, module: ProbeModule, target: Target, now: Instant
) -> list[Metric]:
    """``hwcache_collector_*`` for one target: labelled collector (driver), module and target."""
    labels = {"collector": module.driver, "module": module.name, "target": str(target)}
    families = freshness_families([entry], now)
    for family in families:
        family.samples = [s._replace(labels={**s.labels, **labels}) for s in family.samples]
    return families


def encode(families: Sequence[Metric], encoder: Callable[[CollectorRegistry], bytes]) -> bytes:
    """Exposition bytes of ``families`` by one of prometheus_client's encoders."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families(families))
    return encoder(registry)


async def probe(request: web.Request) -> web.Response:
    """Serve the target's cached families, refreshing them when due within the scrape deadline.

    Not under ``--web.max-requests``: thousands of BMC scrapes may wait for slow polls at
    once, which costs a connection each, not work; polls are bounded by
    ``max_concurrent_polls`` and encoding by the worker threads.
    """
    if request.query_string:
        check_query_size(request)
    module, target = checked_probe(request)
    app = request.app
    probes = app[PROBES]
    try:
        name = probes.entry(module, target)
    except ProbeBusy as exc:
        raise web.HTTPServiceUnavailable(text=f"{exc}; try again later\n") from None
    await probes.cache.fresh([name], scrape_wait(request, app[SETTINGS]))
    now, entry = app[CLOCK].now(), probes.cache.view(name)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    stored = probes.responses.get(entry, content_type, now)
    if stored is not None:
        return web.Response(body=stored, headers={"Content-Type": content_type, **HIT})
    families = [*entry.families, *target_freshness(entry, module, target, now)]
    body = await asyncio.to_thread(encode, families, encoder)
    if not entry.expired(now):  # an expired target's body would never be served again
        probes.responses.put(entry, content_type, body)
    return web.Response(body=body, headers={"Content-Type": content_type, **MISS})
