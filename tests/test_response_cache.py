"""Whole-response cache: keys by format/encoding/query/generation, bounds, validity."""

from __future__ import annotations

import asyncio
import gc
import gzip
import threading
import tracemalloc
from collections.abc import Iterable
from typing import Any

import aiohttp
import pytest
from prometheus_client.metrics_core import Metric

from exporter import render
from exporter.app import create_app
from exporter.clock import FakeClock
from exporter.formats import PLAIN, PROMETHEUS
from exporter.handlers.metrics import RECENT, RECENT_MAX, RECENT_MAX_CHARS
from exporter.keys import RENDERER, RESPONSE_CACHE
from exporter.render import encode
from exporter.response_cache import CacheKey, Rendered, ResponseCache
from exporter.settings import Settings
from tests.doubles import ClientFactory, make_cache

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
    stored = [v for k, v in rc.store.items() if k[2] == "gzip"]
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
    await cache.inflight("a")
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
    # The negotiations remembered are bounded too, and only short requests' are kept.
    assert len(RECENT) == RECENT_MAX
    assert all(sum(map(len, raw)) <= RECENT_MAX_CHARS for raw in RECENT)


def test_byte_bound_evicts_least_recently_used() -> None:
    clock = FakeClock()

    def key(i: int) -> CacheKey:
        return (("i", str(i)),), "text/plain", ""

    def rendered(size: int) -> Rendered:
        return Rendered(b"x" * size, {"Content-Type": "text/plain"}, 0, clock.monotonic() + 100)

    probe = ResponseCache(ttl=0, clock=clock)
    assert probe.put(key(0), rendered(800), 0)
    size = probe.store[key(0)].size
    assert size > 800 + len(repr(key(0)))  # body, key, headers and bookkeeping
    cache = ResponseCache(max_entries=1000, max_bytes=size * 5 // 2, ttl=0, clock=clock)
    for i in range(5):
        cache.put(key(i), rendered(800), 0)
        assert cache.bytes <= cache.max_bytes
    assert [k[0][0][1] for k in cache.store] == ["3", "4"]
    assert cache.store.evictions == 3
    too_big: CacheKey = ((), "text/plain", "")
    assert not cache.put(too_big, rendered(cache.max_bytes), 0)
    assert too_big not in cache.store
    # A body of data that changed while it was rendered is not stored.
    assert not cache.put(key(9), rendered(10), 1) and key(9) not in cache.store


async def test_disabled_response_cache_still_serves(aiohttp_client: ClientFactory) -> None:
    client, rc, cache, collectors, clock = await start(aiohttp_client, response_cache=False)
    for _ in range(3):
        resp = await client.get("/metrics")
        assert resp.status == 200 and "X-Hwcache-Response" not in resp.headers
    assert collectors["a"].calls == 1 and rc.hits == 0
    stats = await (await client.get("/cache/stats")).json()
    assert stats["response_cache"] == {"enabled": False}


# Accept headers a client may send: versions prometheus_client would echo, escapings, junk.
ACCEPT_VARIANTS = [
    *(f"application/openmetrics-text;version=1.0.{n}" for n in range(40)),
    *(f"application/openmetrics-text;version=1.{n}.0;escaping=dots" for n in range(10)),
    *(
        f"application/openmetrics-text;version={major}.0.{n}"
        for major in (2, 3, 99)
        for n in (0, 1)
    ),
    *(f"text/plain;version=1.0.{n};escaping=values" for n in range(10)),
    *(
        f"text/plain;version=1.0.0;escaping={escaping}"
        for escaping in ("underscores", "dots", "values", "allow-utf-8", "bogus")
    ),
    "application/openmetrics-text;version=abc",
    "application/openmetrics-text;version=0.0.1,text/plain;version=0.0.4;q=0.5",
    "application/openmetrics-text",
    "text/html, */*",
    "",
]


async def test_accept_variants_make_a_few_formats_and_renders(
    aiohttp_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, rc, *_ = await start(aiohttp_client, response_cache_max_entries=10_000)
    renders: list[str] = []

    def counting(families: Iterable[Metric], fmt: Any) -> bytes:
        families = list(families)
        if any(family.name == "hw_test_a_value" for family in families):
            renders.append(fmt.content_type)
        return encode(families, fmt)

    monkeypatch.setattr(render, "encode", counting)
    content_types = set()
    for accept in ACCEPT_VARIANTS:
        for encoding in ("gzip", "identity"):
            headers = {"Accept": accept, "Accept-Encoding": encoding}
            resp = await client.get("/metrics", headers=headers)
            assert resp.status == 200 and b'{device="dev0"}' in await resp.read()
            content_types.add(resp.headers["Content-Type"])
    # Never the client's own version: only what prometheus_client can write.
    versions = {part.strip() for ct in content_types for part in ct.split(";") if "version" in part}
    assert versions <= {"version=0.0.4", "version=1.0.0", "version=2.0.0"}, versions
    assert len(content_types) <= 14
    assert len(rc.store) <= 2 * len(content_types)
    assert len(renders) <= len(content_types), renders


async def test_memory_of_the_response_path_stays_within_its_bound(
    aiohttp_client: ClientFactory,
) -> None:
    max_bytes = 400_000
    client, rc, *_ = await start(
        aiohttp_client, response_cache_max_entries=10_000, response_cache_max_bytes=max_bytes
    )
    padding = "x" * 3000
    # A session of our own: the test client keeps every response it returned.
    session = aiohttp.ClientSession()

    async def fill(first: int, count: int) -> None:
        for i in range(first, first + count):
            url = client.make_url(f"/metrics?name[]=hw_test_a_value&name[]=nope_{i}_{padding}")
            async with session.get(url, headers={"Accept": f"text/plain;q=0.{i}"}) as resp:
                assert resp.status == 200 and b"hw_test_a_value" in await resp.read()

    async with session:
        tracemalloc.start()  # before the warm-up: what bounded caches drop is traced too
        try:
            # Warm-up: yarl's URL caches (128 entries each) and our bounds are full from here on.
            await fill(0, 300)
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            await fill(300, 600)
            gc.collect()
            retained = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    # 600 distinct requests of ~3 KB each: what the process keeps is what the bound allows.
    assert retained <= max_bytes + 200_000, retained
    stats = await (await client.get("/cache/stats")).json()
    held = sum(len(v.body) + len(repr(k)) for k, v in rc.store.items())
    assert stats["response_cache"]["bytes"] >= held > 0
    assert stats["response_cache"]["bytes"] <= max_bytes


async def test_data_changed_during_a_render_is_not_served_from_cache(
    aiohttp_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, rc, cache, collectors, clock = await start(aiohttp_client)
    started, release = threading.Event(), threading.Event()

    def blocking(families: Iterable[Metric], fmt: Any) -> bytes:
        families = list(families)
        dots = fmt.content_type.endswith("dots") and not started.is_set()
        if dots and any(f.name == "hw_test_a_value" for f in families):
            started.set()
            release.wait(timeout=5)
        return encode(families, fmt)

    monkeypatch.setattr(render, "encode", blocking)
    dots = {"Accept": "text/plain;version=1.0.0;escaping=dots"}  # not pre-rendered
    scrape = asyncio.create_task(client.get("/metrics", headers=dots))
    assert await asyncio.to_thread(started.wait, 10)
    cache.invalidate(["a"], refresh_now=True)  # new data commits while the old renders
    await cache.inflight("a")
    release.set()
    first = await scrape
    assert 'hw__test__a__value{device="dev0"} 1.0' in await first.text()
    monkeypatch.setattr(render, "encode", encode)
    again = await client.get("/metrics", headers=dots)
    assert again.headers["X-Hwcache-Response"] == "miss"
    assert 'hw__test__a__value{device="dev0"} 2.0' in await again.text()


async def test_scrapes_every_15s_are_hits_until_the_data_changes(
    aiohttp_client: ClientFactory,
) -> None:
    cache, collectors, clock = make_cache("a", "b", interval=600.0)
    app = create_app(Settings(collectors=()), clock=clock, cache=cache)  # default TTL
    client = await aiohttp_client(app)
    await cache.warm_up()
    answers = []
    for _ in range(40):  # ten minutes of a Prometheus scraping every 15 s
        resp = await client.get("/metrics", headers={"Accept": OPENMETRICS})
        assert resp.status == 200
        answers.append(resp.headers["X-Hwcache-Response"])
        clock.advance(15)
    assert answers == ["miss"] + ["hit"] * 39
    stats = (await (await client.get("/cache/stats")).json())["response_cache"]
    assert (stats["hits"], stats["misses"]) == (39, 1)
    # Past the interval the data expires: the next scrape refreshes and is a miss again.
    resp = await client.get("/metrics", headers={"Accept": OPENMETRICS})
    assert resp.headers["X-Hwcache-Response"] == "miss" and collectors["a"].calls == 2
    body = await resp.text()
    assert "hwcache_response_cache_hits_total 39.0" in body


async def test_formats_are_rendered_only_when_asked(aiohttp_client: ClientFactory) -> None:
    client, rc, cache, collectors, clock = await start(aiohttp_client, response_cache=False)
    renders = client.app[RENDERER].renders
    # Before any scrape, new data is rendered once, in Prometheus' format.
    assert renders == {PROMETHEUS.body_key: 2}
    for _ in range(3):
        resp = await client.get("/metrics", headers={"Accept": "text/plain"})
        assert 'hw_test_a_value{device="dev0"} 1.0' in await resp.text()
    assert renders == {PROMETHEUS.body_key: 2, PLAIN.body_key: 2}  # once per collector
    # A data change renders the formats that collector was asked in: text only.
    cache.invalidate(["a"], refresh_now=True)
    await cache.inflight("a")
    assert renders == {PROMETHEUS.body_key: 2, PLAIN.body_key: 3}
    resp = await client.get("/metrics", headers={"Accept": "text/plain"})
    assert 'hw_test_a_value{device="dev0"} 2.0' in await resp.text()
    assert renders == {PROMETHEUS.body_key: 2, PLAIN.body_key: 3}


async def test_gzip_refused_with_q_zero_gets_identity(aiohttp_client: ClientFactory) -> None:
    client, rc, *_ = await start(aiohttp_client)
    for encoding in ("gzip;q=0", "gzip;q=0, identity", "*;q=0.5, gzip;q=0"):
        resp = await client.get(
            "/metrics", headers={"Accept-Encoding": encoding}, auto_decompress=False
        )
        assert "Content-Encoding" not in resp.headers, encoding
        assert b"hw_test_a_value" in await resp.read()
    assert [k[2] for k in rc.store] == [""]
