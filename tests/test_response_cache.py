"""Whole-response cache: keys by format/encoding/query/generation, bounds, validity."""

from __future__ import annotations

import gzip
from typing import Any

from aiohttp import web

from exporter.app import create_app
from exporter.clock import FakeClock
from exporter.keys import RESPONSE_CACHE
from exporter.response_cache import ResponseCache
from exporter.settings import Settings
from tests.doubles import make_cache
from tests.test_endpoints import ClientFactory

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


async def start(aiohttp_client: ClientFactory, **settings: Any) -> Any:
    cache, collectors, clock = make_cache("a", "b")
    app = create_app(Settings(collectors=(), **settings), clock=clock, cache=cache)
    client = await aiohttp_client(app)
    await cache.warm_up()
    return client, app[RESPONSE_CACHE], cache, collectors, clock


async def test_openmetrics_and_text_are_never_mixed(aiohttp_client: ClientFactory) -> None:
    client, rc, *_ = await start(aiohttp_client)
    for _ in range(3):
        for accept in (OPENMETRICS, "text/plain", OPENMETRICS, ""):
            resp = await client.get("/metrics", headers={"Accept": accept})
            body = await resp.text()
            if accept == OPENMETRICS:
                assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
                assert body.endswith("# EOF\n")
            else:
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                assert "# EOF" not in body
    assert rc.hits >= 8 and len(rc.store) == 2


async def test_escaping_variants_are_distinct_entries(aiohttp_client: ClientFactory) -> None:
    client, rc, *_ = await start(aiohttp_client)
    for escaping in ("underscores", "dots", "allow-utf-8", "values"):
        accept = f"text/plain;version=1.0.0;escaping={escaping}"
        resp = await client.get("/metrics", headers={"Accept": accept})
        assert resp.headers["Content-Type"].endswith(f"escaping={escaping}")
        again = await client.get("/metrics", headers={"Accept": accept})
        assert again.headers["Content-Type"] == resp.headers["Content-Type"]
        assert again.headers["X-Hwcache-Response"] == "hit"
    assert len(rc.store) == 4


async def test_gzip_only_for_clients_that_accept_it(aiohttp_client: ClientFactory) -> None:
    client, rc, *_ = await start(aiohttp_client)
    for _ in range(3):
        for encoding in ("gzip", "identity", "deflate, gzip;q=0.5", ""):
            resp = await client.get(
                "/metrics", headers={"Accept-Encoding": encoding}, auto_decompress=False
            )
            raw = await resp.read()
            if "gzip" in encoding:
                assert resp.headers["Content-Encoding"] == "gzip"
                assert b"hw_test_a_value" in gzip.decompress(raw)
            else:
                assert "Content-Encoding" not in resp.headers
                assert b"hw_test_a_value" in raw
    # gzip bodies are stored compressed, once per entry
    stored = [v for k, v in rc.store.items() if k[3] == "gzip"]
    assert stored and all(v.body[:2] == b"\x1f\x8b" for v in stored)


async def test_query_parameter_order_does_not_matter(aiohttp_client: ClientFactory) -> None:
    client, rc, *_ = await start(aiohttp_client)
    await client.get("/metrics?collect[]=a&collect[]=b&name[]=hw_test_a_value")
    resp = await client.get("/metrics?name[]=hw_test_a_value&collect[]=b&collect[]=a")
    assert resp.headers["X-Hwcache-Response"] == "hit" and rc.hits == 1


async def test_only_200_responses_are_cached(aiohttp_client: ClientFactory) -> None:
    client, rc, *_ = await start(aiohttp_client)
    for _ in range(3):
        assert (await client.get("/metrics?collect[]=nope")).status == 400
    assert len(rc.store) == 0 and rc.hits == 0


async def test_data_change_is_never_served_from_old_entry(aiohttp_client: ClientFactory) -> None:
    client, rc, cache, collectors, clock = await start(aiohttp_client)
    await client.get("/metrics")
    assert (await client.get("/metrics")).headers["X-Hwcache-Response"] == "hit"
    cache.invalidate(["a"], refresh_now=True)
    await cache.entries["a"].inflight
    resp = await client.get("/metrics")
    assert resp.headers["X-Hwcache-Response"] == "miss"
    assert 'hw_test_a_value{device="dev0"} 2.0' in await resp.text()


async def test_cached_response_never_outlives_collector_expiry(
    aiohttp_client: ClientFactory,
) -> None:
    client, rc, cache, collectors, clock = await start(aiohttp_client, response_cache_ttl=0)
    await client.get("/metrics")
    clock.advance(59)
    assert (await client.get("/metrics")).headers["X-Hwcache-Response"] == "hit"
    clock.advance(2)  # past the 60 s interval: the scrape must reach the handler and refresh
    resp = await client.get("/metrics")
    assert resp.headers["X-Hwcache-Response"] == "miss"
    assert collectors["a"].calls == 2


async def test_ttl_bounds_entry_life(aiohttp_client: ClientFactory) -> None:
    client, rc, cache, collectors, clock = await start(aiohttp_client, response_cache_ttl=5)
    await client.get("/metrics")
    clock.advance(4)
    assert (await client.get("/metrics")).headers["X-Hwcache-Response"] == "hit"
    clock.advance(2)
    assert (await client.get("/metrics")).headers["X-Hwcache-Response"] == "miss"
    assert rc.expired == 1 and collectors["a"].calls == 1


async def test_ten_thousand_distinct_queries_stay_within_bounds(
    aiohttp_client: ClientFactory,
) -> None:
    client, rc, *_ = await start(
        aiohttp_client, response_cache_max_entries=100, response_cache_max_bytes=200_000
    )
    for i in range(10_000):
        resp = await client.get(f"/metrics?collect[]=a&cachebuster={i}")
        assert resp.status == 200
        await resp.read()
        assert len(rc.store) <= 100 and rc.store.currsize <= 200_000
    assert rc.misses == 10_000 and rc.store.evictions >= 9_900


def test_byte_bound_evicts_least_recently_used() -> None:
    clock = FakeClock()
    cache = ResponseCache(max_entries=1000, max_bytes=3000, ttl=0, clock=clock)
    for i in range(5):
        key = ("/metrics", (("i", str(i)),), "text/plain", "", 0)
        cache.put(key, web.Response(body=b"x" * 800), clock.now + 100)
        assert cache.store.currsize <= 3000
    assert [k[1][0][1] for k in cache.store] == ["3", "4"]
    assert cache.store.evictions == 3
    too_big = ("/metrics", (), "text/plain", "", 0)
    cache.put(too_big, web.Response(body=b"x" * 5000), clock.now + 100)
    assert too_big not in cache.store


async def test_disabled_response_cache_still_serves(aiohttp_client: ClientFactory) -> None:
    client, rc, cache, collectors, clock = await start(aiohttp_client, response_cache=False)
    for _ in range(3):
        resp = await client.get("/metrics")
        assert resp.status == 200 and "X-Hwcache-Response" not in resp.headers
    assert collectors["a"].calls == 1 and rc.hits == 0
    stats = await (await client.get("/cache/stats")).json()
    assert stats["response_cache"] == {"enabled": False}
