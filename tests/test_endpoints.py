"""HTTP endpoints on a real aiohttp server: /metrics filters, deadlines, stats, invalidate, pages."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Exemplar

from collectors.base import CollectorContext
from collectors.synthetic import SyntheticCollector
from exporter import render
from exporter.app import create_app
from exporter.cache import CacheEntry, MetricCache
from exporter.clock import FakeClock
from exporter.render import encode
from exporter.settings import Settings
from tests.doubles import ClientFactory, CountingCollector, make_cache, start, start_cache
from tests.exposition import value


async def test_metrics_serves_cached_families_and_freshness(aiohttp_client: ClientFactory) -> None:
    client, cache, collectors, clock = await start(aiohttp_client, "a", "b")
    for _ in range(5):
        resp = await client.get("/metrics")
        assert resp.status == 200
    body = await resp.text()
    assert value(body, "hw_test_a_value", device="dev0") == 1.0
    assert value(body, "hwcache_collector_success", collector="a") == 1.0
    assert value(body, "hwcache_collector_refreshes_total", collector="a", result="success") == 1
    assert value(body, "hwcache_collector_interval_seconds", collector="b") == 60.0
    assert collectors["a"].calls == 1 and collectors["b"].calls == 1
    clock.advance(5)
    body = await (await client.get("/metrics?collect[]=a&x=1")).text()
    collected = value(body, "hwcache_collector_last_success_timestamp_seconds", collector="a")
    assert collected == clock.wall() - 5
    attempted = value(body, "hwcache_collector_last_attempt_timestamp_seconds", collector="a")
    assert attempted == clock.wall() - 5


async def test_collect_and_exclude_filters(aiohttp_client: ClientFactory) -> None:
    client, *_ = await start(aiohttp_client, "a", "b")
    body = await (await client.get("/metrics?collect[]=a")).text()
    assert "hw_test_a_value" in body and "hw_test_b_value" not in body
    assert 'collector="b"' not in body
    body = await (await client.get("/metrics?exclude[]=a")).text()
    assert "hw_test_a_value" not in body and "hw_test_b_value" in body


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("collect[]=a&exclude[]=b", "cannot be combined"),
        ("collect[]=nope", "unknown or disabled collector 'nope'"),
        ("exclude[]=nope", "enabled collectors: a, b"),
    ],
)
async def test_bad_filters_are_400_with_clear_message(
    aiohttp_client: ClientFactory, query: str, message: str
) -> None:
    client, *_ = await start(aiohttp_client, "a", "b")
    resp = await client.get(f"/metrics?{query}")
    assert resp.status == 400
    assert message in await resp.text()


async def test_name_filter_keeps_only_named_samples(aiohttp_client: ClientFactory) -> None:
    client, *_ = await start(aiohttp_client, "a", "b")
    resp = await client.get("/metrics?name[]=hw_test_b_value&name[]=hwcache_build_info")
    names = {s.name for f in text_string_to_metric_families(await resp.text()) for s in f.samples}
    assert names == {"hw_test_b_value", "hwcache_build_info"}


async def test_hanging_refresh_serves_stale_within_scrape_deadline(
    aiohttp_client: ClientFactory,
) -> None:
    client, cache, collectors, clock = await start(
        aiohttp_client, "a", "b", scrape_timeout_offset=0.5
    )
    clock.advance(100)
    collectors["a"].gate = asyncio.Event()
    started = time.monotonic()
    resp = await client.get("/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "1"})
    elapsed = time.monotonic() - started
    body = await resp.text()
    assert resp.status == 200 and elapsed < 1.0
    assert value(body, "hw_test_a_value", device="dev0") == 1.0  # stale data
    collected = value(body, "hwcache_collector_last_success_timestamp_seconds", collector="a")
    assert collected == clock.wall() - 100  # unchanged: still the first collection
    attempted = value(body, "hwcache_collector_last_attempt_timestamp_seconds", collector="a")
    assert attempted == clock.wall()  # the hanging refresh
    assert value(body, "hwcache_collector_stale", collector="a") == 1.0
    assert value(body, "hw_test_b_value", device="dev0") == 2.0  # b refreshed meanwhile
    collectors["a"].gate.set()
    refresh = cache.inflight("a")
    assert refresh is not None  # the scrape gave up waiting; the refresh went on
    await refresh
    body = await (await client.get("/metrics")).text()
    assert value(body, "hw_test_a_value", device="dev0") == 2.0
    assert collectors["a"].calls == 2


async def test_failing_collector_leaves_others_untouched(aiohttp_client: ClientFactory) -> None:
    client, cache, collectors, clock = await start(aiohttp_client, "a", "b", "c")
    clock.advance(100)
    collectors["b"].fail = "smartctl exploded"
    body = await (await client.get("/metrics")).text()
    assert value(body, "hwcache_collector_success", collector="b") == 0.0
    assert value(body, "hw_test_b_value", device="dev0") == 1.0  # last good data
    for name in ("a", "c"):
        assert value(body, "hwcache_collector_success", collector=name) == 1.0
        assert value(body, f"hw_test_{name}_value", device="dev0") == 2.0
    stats = await (await client.get("/cache/stats")).json()
    assert stats["collectors"]["b"]["last_error"] == "RuntimeError: smartctl exploded"
    assert stats["collectors"]["b"]["status"] == "error"
    assert stats["collectors"]["a"]["status"] == "ok"


async def test_never_succeeded_collector_exports_only_freshness(
    aiohttp_client: ClientFactory,
) -> None:
    cache, collectors, clock = make_cache("a", "b")
    collectors["a"].fail = "no luck"
    app = create_app(Settings(collectors=()), clock=clock, cache=cache)
    client = await aiohttp_client(app)
    await cache.warm_up()
    body = await (await client.get("/metrics")).text()
    assert "hw_test_a_value" not in body
    assert value(body, "hwcache_collector_success", collector="a") == 0.0
    assert value(body, "hwcache_collector_last_success_timestamp_seconds", collector="a") is None


async def test_stats_json_shape(aiohttp_client: ClientFactory) -> None:
    client, cache, _, clock = await start(aiohttp_client, "a")
    for _ in range(3):
        await client.get("/metrics")
    stats = await (await client.get("/cache/stats")).json()
    a = stats["collectors"]["a"]
    assert a["collected_at"] == clock.wall() and a["expires_at"] == clock.wall() + 60  # Unix time
    assert a["samples"] == 3 and a["refreshes"] == {"success": 1}
    assert stats["response_cache"]["hits"] == 2 and stats["response_cache"]["misses"] == 1
    assert stats["ready"] is True and stats["generation"] == cache.generation


async def test_invalidate_rules(aiohttp_client: ClientFactory) -> None:
    client, cache, collectors, clock = await start(aiohttp_client, "a", "b")
    assert (await client.get("/cache/invalidate")).status == 405
    resp = await client.post("/cache/invalidate?collector=zzz")
    assert resp.status == 400 and "zzz" in (await resp.json())["error"]
    assert (await client.post("/cache/invalidate?refresh=later")).status == 400
    assert (await client.post("/cache/invalidate?bogus=1")).status == 400
    resp = await client.post("/cache/invalidate?collector=a&refresh=now")
    assert resp.status == 202
    assert await resp.json() == {"invalidated": ["a"], "refresh": "now", "generation": 3}
    refresh = cache.inflight("a")
    if refresh is not None:  # recollecting now
        await refresh
    assert collectors["a"].calls == 2 and collectors["b"].calls == 1
    resp = await client.post("/cache/invalidate?collector=a&collector=b")
    assert resp.status == 429 and resp.headers["Retry-After"] == "60"
    assert not cache.view("b").expired(clock.now())  # nothing invalidated on 429
    clock.advance(61)
    resp = await client.post("/cache/invalidate")
    assert resp.status == 200 and (await resp.json())["invalidated"] == ["a", "b"]
    await client.get("/metrics")
    assert collectors["a"].calls == 3 and collectors["b"].calls == 2


async def test_invalidate_can_be_disabled(aiohttp_client: ClientFactory) -> None:
    client, *_ = await start(aiohttp_client, "a", invalidate_enabled=False)
    assert (await client.post("/cache/invalidate")).status == 403


async def test_landing_page_lists_collectors(aiohttp_client: ClientFactory) -> None:
    client, cache, collectors, clock = await start(aiohttp_client, "a", "b")
    clock.advance(100)
    collectors["b"].fail = "<script>boom</script>"
    await client.get("/metrics")
    page = await (await client.get("/")).text()
    assert 'href="/metrics"' in page
    assert 'id="collector-a"' in page and 'class="status ok"' in page
    assert 'class="status error"' in page and "&lt;script&gt;boom" in page


async def test_ready_waits_for_initial_collection(aiohttp_client: ClientFactory) -> None:
    cache, collectors, clock = make_cache("a")
    gate = collectors["a"].gate = asyncio.Event()
    app = create_app(Settings(collectors=()), clock=clock, cache=cache)
    client = await aiohttp_client(app)
    assert (await client.get("/-/healthy")).status == 200
    assert (await client.get("/-/ready")).status == 503
    gate.set()
    for _ in range(100):
        if (await client.get("/-/ready")).status == 200:
            break
        await asyncio.sleep(0.01)
    assert (await client.get("/-/ready")).status == 200


async def test_renders_run_off_the_loop_while_healthy_answers(
    aiohttp_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    options = {"samples": "20000", "delay": "0"}
    collector = SyntheticCollector(CollectorContext(options=options))
    cache = MetricCache([CacheEntry("synthetic", collector, 60.0, 30.0)], clock)
    client = await aiohttp_client(create_app(Settings(collectors=()), clock=clock, cache=cache))
    await cache.warm_up()
    loop_thread = threading.get_ident()
    started, release = threading.Event(), threading.Event()
    threads: list[int] = []

    def hooked_encode(families: Iterable[Metric], fmt: Any) -> bytes:
        families = list(families)
        threads.append(threading.get_ident())
        if sum(len(family.samples) for family in families) >= 1000:
            started.set()
            release.wait(timeout=5)  # on the loop thread this would stall every request
        return encode(families, fmt)

    monkeypatch.setattr(render, "encode", hooked_encode)
    accept = "application/openmetrics-text;version=1.0.7;escaping=allow-utf-8"
    for path, headers in (
        ("/metrics", {"Accept": accept}),  # a format not rendered yet
        ("/metrics?name[]=hw_synthetic_value_3", {}),  # a filter: rendered per request
    ):
        started.clear()
        release.clear()
        scrape = asyncio.create_task(client.get(path, headers=headers))
        assert await asyncio.to_thread(started.wait, 10)
        healthy = await asyncio.wait_for(client.get("/-/healthy"), 5)
        assert healthy.status == 200
        assert not scrape.done()  # still rendering
        release.set()
        resp = await scrape
        assert resp.status == 200 and 'device="dev199"' in await resp.text()
    assert threads and loop_thread not in threads


@pytest.mark.parametrize("response_cache", [True, False])
async def test_negotiated_responses_vary_on_accept_and_encoding(
    aiohttp_client: ClientFactory, response_cache: bool
) -> None:
    client, *_ = await start(aiohttp_client, "a", response_cache=response_cache)
    answered = set()
    for query in ("", "?name[]=hw_test_a_value"):
        for encoding in ("identity", "gzip"):
            for accept in ("", "application/openmetrics-text;version=1.0.0"):
                for _ in range(2):  # a miss, then a hit
                    headers = {"Accept": accept, "Accept-Encoding": encoding}
                    resp = await client.get(f"/metrics{query}", headers=headers)
                    assert resp.status == 200
                    assert resp.headers["Vary"] == "Accept, Accept-Encoding"
                    assert resp.headers.get("Content-Encoding") == (
                        "gzip" if encoding == "gzip" else None
                    )
                    answered.add(resp.headers.get("X-Hwcache-Response"))
    assert answered == ({"miss", "hit"} if response_cache else {None})


class ExemplarFromSecondCall(CountingCollector):
    """A gauge that gains an exemplar: text can write it, OpenMetrics refuses it."""

    async def collect(self) -> Sequence[Metric]:
        families = list(await super().collect())
        if self.calls > 1:
            sample = families[0].samples[0]
            families[0].samples[0] = sample._replace(exemplar=Exemplar({"trace_id": "1"}, 1.0))
        return families


async def test_format_that_cannot_be_written_leaves_out_only_that_collector(
    aiohttp_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    odd, good = ExemplarFromSecondCall("odd"), CountingCollector("good")
    entries = [CacheEntry("odd", odd, 60.0, 5.0), CacheEntry("good", good, 60.0, 5.0)]
    cache = MetricCache(entries, clock)
    client = await start_cache(aiohttp_client, cache, clock, response_cache=False)
    text = {"Accept": "text/plain"}
    assert "hw_test_odd_value" in await (await client.get("/metrics", headers=text)).text()
    # New data is rendered (and so checked) in the format it was asked in: text, which works.
    cache.invalidate(["odd"], refresh_now=True)
    refresh = cache.inflight("odd")
    assert refresh is not None
    await refresh
    body = await (await client.get("/metrics", headers=text)).text()
    assert value(body, "hw_test_odd_value", device="dev0") == 2.0
    assert value(body, "hwcache_collector_success", collector="odd") == 1.0
    # OpenMetrics, first asked now, cannot write it: that collector is left out, and logged.
    resp = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    body = await resp.text()
    assert resp.status == 200 and body.endswith("# EOF\n")
    assert "hw_test_odd_value" not in body and 'hw_test_good_value{device="dev0"} 1.0' in body
    assert "collector odd cannot be exposed as application/openmetrics-text" in caplog.text
