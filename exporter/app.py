"""The aiohttp application factory: the cache lives on the app, shared by every request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from aiohttp import web

from collectors.base import CollectorContext
from collectors.registry import CollectorSpec, load_all
from collectors.script import ScriptCollector
from collectors.toolkit.runner import CommandRunner
from exporter import probe_snapshot, sdnotify, snapshot
from exporter.auth import WEB_SECURITY, WebSecurity
from exporter.cache import CacheEntry, MetricCache
from exporter.clock import Clock, system_clock
from exporter.families import SCRIPT
from exporter.handlers import routes
from exporter.keys import CACHE, CLOCK, PROBES, READY, RENDERER, RESPONSE_CACHE, SETTINGS
from exporter.limits import RequestLimiter
from exporter.probe_cache import ProbeCache, driver_factory
from exporter.render import Renderer
from exporter.response_cache import ResponseCache
from exporter.settings import Settings

log = logging.getLogger(__name__)


def build_cache(
    settings: Settings,
    runner: CommandRunner,
    clock: Clock,
    registry: dict[str, CollectorSpec] | None = None,
    psutil_module: Any = None,
) -> MetricCache:
    """Instantiate the enabled collectors and their cache entries."""
    registry = registry if registry is not None else load_all()
    base = CollectorContext(settings.procfs, settings.sysfs, settings.rootfs, runner)
    if psutil_module is not None:
        base = replace(base, psutil=psutil_module)
    entries = []
    for conf in settings.collectors:
        ctx = replace(base, options=dict(conf.options), timeout=conf.timeout)
        if conf.script is not None:
            script = conf.script
            collector = ScriptCollector(ctx, script.command, script.env, script.workdir)
            entries.append(
                CacheEntry(conf.name, collector, conf.interval, conf.timeout, namespace=SCRIPT)
            )
            continue
        spec = registry[conf.name]
        entries.append(CacheEntry(conf.name, spec.factory(ctx), conf.interval, conf.timeout))
    return MetricCache(entries, clock, settings.error_retry_interval)


def create_app(
    settings: Settings,
    clock: Clock = system_clock,
    cache: MetricCache | None = None,
    runner: CommandRunner | None = None,
    warm_up: bool = True,
    security: WebSecurity | None = None,
) -> web.Application:
    """Build the app; pass ``cache`` to use prebuilt collectors (tests, benchmarks)."""
    runner = runner or CommandRunner(settings.tool_max_output)
    cache = cache or build_cache(settings, runner, clock)
    response_cache = ResponseCache(
        settings.response_cache_max_entries,
        settings.response_cache_max_bytes,
        settings.response_cache_ttl,
        clock,
    )
    # Without ``security`` the web config file is loaded here (raises WebConfigError).
    security = security or WebSecurity.from_file(settings.web_config_file)
    app = web.Application()
    security.install(app)
    app[SETTINGS] = settings
    app[CACHE] = cache
    app[RESPONSE_CACHE] = response_cache
    app[READY] = asyncio.Event()
    app[CLOCK] = clock
    app[RENDERER] = renderer = Renderer()
    app[WEB_SECURITY] = security
    app.add_routes(routes(settings.telemetry_path, RequestLimiter(settings.max_requests)))
    if settings.probe is not None:
        drivers = driver_factory(runner)
        probes = ProbeCache(settings.probe, drivers, clock, settings.error_retry_interval)
        probes.cache.prerender = Renderer().prerender  # checks only: /probe encodes itself
        app[PROBES] = probes
    cache.prerender = renderer.prerender
    if settings.cache_dir is not None:
        # Registered first: restores before the warm-up, flushes after cache.close().
        app.cleanup_ctx.append(snapshot.persistence(cache, settings))
        if PROBES in app:
            app.cleanup_ctx.append(probe_snapshot.persistence(app[PROBES], settings))
    app.cleanup_ctx.append(_background(warm_up))
    return app


def _background(warm_up: bool) -> Any:
    async def background(app: web.Application) -> AsyncIterator[None]:
        cache, ready = app[CACHE], app[READY]

        async def warm() -> None:
            await cache.warm_up()
            ready.set()
            log.info("initial collection finished for %d collectors", len(cache))
            sdnotify.status(f"ready; collectors: {', '.join(cache.names) or '(none)'}")

        task = asyncio.create_task(warm()) if warm_up else None
        if task is None:
            ready.set()
        yield
        if task is not None:
            task.cancel()
        await cache.close()
        if PROBES in app:
            await app[PROBES].close()

    return background
