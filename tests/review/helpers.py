"""Shared helpers of the review tests: an app on a real aiohttp test server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from exporter.app import create_app
from exporter.cache import MetricCache
from exporter.clock import FakeClock
from exporter.settings import Settings
from tests.doubles import CountingCollector, make_cache

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


async def start(
    aiohttp_client: ClientFactory, *names: str, **settings: Any
) -> tuple[TestClient[Any, Any], MetricCache, dict[str, CountingCollector], FakeClock]:
    """An app over counting collectors on a fake clock, warmed up."""
    cache, collectors, clock = make_cache(*names)
    return await start_cache(aiohttp_client, cache, clock, **settings), cache, collectors, clock


async def start_cache(
    aiohttp_client: ClientFactory, cache: MetricCache, clock: FakeClock, **settings: Any
) -> TestClient[Any, Any]:
    """An app over a prebuilt cache, warmed up."""
    app = create_app(Settings(collectors=(), **settings), clock=clock, cache=cache)
    client = await aiohttp_client(app)
    await cache.warm_up()
    return client
