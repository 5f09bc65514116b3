"""Property tests: random queries and headers never cause a 5xx or break the cache bounds."""

from __future__ import annotations

import asyncio
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from exporter.app import create_app
from exporter.keys import CACHE, RESPONSE_CACHE
from exporter.settings import CollectorSettings, Settings
from tests.support import PROCFS, SYSFS

ENABLED = ("cpu", "memory", "synthetic")
MAX_ENTRIES = 12
MAX_BYTES = 48 * 1024
METRICS_EXAMPLES = 2500
INVALIDATE_EXAMPLES = 600
OTHER_EXAMPLES = 400
MAX_LINE = 8000  # aiohttp answers a longer request line with 400 before routing

FUZZ = settings(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@dataclass
class Harness:
    """A real app on a loopback TestServer, driven from synchronous hypothesis tests."""

    loop: asyncio.AbstractEventLoop
    client: TestClient[Any, Any]
    app: web.Application
    requests: int = 0

    def call(self, method: str, url: URL, headers: dict[str, str]) -> tuple[int, bytes]:
        """Send one request; return status and body."""

        async def go() -> tuple[int, bytes]:
            async with self.client.request(method, url, headers=headers) as resp:
                return resp.status, await resp.read()

        self.requests += 1
        return self.loop.run_until_complete(go())

    def check_bounds(self) -> None:
        """The response cache never exceeds its configured bounds."""
        store = self.app[RESPONSE_CACHE].store
        assert store.currsize <= MAX_BYTES
        assert len(store) <= MAX_ENTRIES


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    """One app for the whole module: cache state accumulates across examples."""
    collectors = (
        CollectorSettings("cpu", 3600.0, 10.0),
        CollectorSettings("memory", 3600.0, 10.0),
        CollectorSettings("synthetic", 3600.0, 10.0, {"samples": "40", "delay": "0"}),
    )
    app_settings = Settings(
        collectors=collectors,
        procfs=PROCFS,
        sysfs=SYSFS,
        response_cache_max_entries=MAX_ENTRIES,
        response_cache_max_bytes=MAX_BYTES,
        invalidate_min_interval=0.0,
    )
    loop = asyncio.new_event_loop()
    app = create_app(app_settings)
    client: TestClient[Any, Any] = TestClient(TestServer(app), loop=loop)
    loop.run_until_complete(client.start_server())
    loop.run_until_complete(app[CACHE].warm_up())
    try:
        yield Harness(loop, client, app)
    finally:
        loop.run_until_complete(client.close())
        loop.close()


header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"),
    max_size=200,
)
media_types = st.sampled_from(
    [
        "text/plain",
        "text/plain;version=0.0.4",
        "text/plain; version=1.0.0; escaping=allow-utf-8",
        "application/openmetrics-text",
        "application/openmetrics-text; version=1.0.0",
        "application/openmetrics-text; version=0.0.1",
        "application/openmetrics-text;version=1.0.0;escaping=underscores",
        "application/openmetrics-text; version=1.0.0; escaping=dots",
        "application/openmetrics-text; version=1.0.0; escaping=values",
        "application/openmetrics-text; version=1.0.0; escaping=allow-utf-8",
        "application/openmetrics-text; version=2.0.0; escaping=bogus",
        "application/openmetrics-text; version=abc",
        "application/openmetrics-text; version=1.x.0",
        "text/plain; version=",
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
        "*/*",
        "",
    ]
)
accept = st.one_of(
    media_types,
    st.lists(
        st.tuples(media_types, st.sampled_from(["", ";q=0.5", ";q=0.1", ";q=abc"])).map("".join),
        max_size=4,
    ).map(",".join),
    header_text,
)
accept_encoding = st.one_of(
    st.sampled_from(["", "gzip", "gzip, deflate, br", "GZIP;q=0", "identity", "br", "*"]),
    header_text,
)
scrape_timeout = st.one_of(
    st.sampled_from(["", "1.5", "0", "-1", "nan", "inf", "1e309", "0.4"]),
    header_text,
)
unicode_text = st.text(max_size=30)
collector_name = st.one_of(
    st.sampled_from(ENABLED),
    st.sampled_from(["sensors", "smart", "dmi", "CPU", "cpu ", ""]),
    unicode_text,
    st.text(alphabet=string.ascii_lowercase, min_size=2000, max_size=9000),
)
metric_name = st.one_of(
    st.sampled_from(
        ["hw_memory_total_bytes", "hw_synthetic_value_3", "hwcache_collector_success", "up"]
    ),
    unicode_text,
)
params = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["collect[]", "exclude[]"]), collector_name),
        st.tuples(st.just("name[]"), metric_name),
        st.tuples(st.text(max_size=12), st.text(max_size=12)),
    ),
    max_size=5,
)
raw_query = st.text(
    alphabet=string.ascii_letters + string.digits + "%&=[]+;-_.~!$'()*,/:@?", max_size=120
)


def build_url(path: str, pairs: list[tuple[str, str]], raw: str | None) -> URL:
    """Encoded params, or a raw (possibly malformed) query string sent as is."""
    if raw is not None:
        return URL(f"{path}?{raw}", encoded=True)
    return URL(path).with_query(pairs)


def assert_no_5xx(status: int, body: bytes) -> None:
    """2xx or 4xx only: a client can never make the exporter fail."""
    assert 200 <= status < 500, f"HTTP {status}: {body[:300]!r}"


def test_metrics_queries_and_negotiation(harness: Harness) -> None:
    """Random ``collect[]``/``exclude[]``/``name[]``, raw queries, Accept and encodings."""
    start = harness.requests
    statuses: set[int] = set()

    @settings(FUZZ, max_examples=METRICS_EXAMPLES)
    @given(
        pairs=params,
        raw=st.none() | raw_query,
        accept=accept,
        encoding=accept_encoding,
        timeout=scrape_timeout,
    )
    def run(
        pairs: list[tuple[str, str]], raw: str | None, accept: str, encoding: str, timeout: str
    ) -> None:
        headers = {"Accept": accept, "Accept-Encoding": encoding}
        if timeout:
            headers["X-Prometheus-Scrape-Timeout-Seconds"] = timeout
        status, body = harness.call("GET", build_url("/metrics", pairs, raw), headers)
        assert_no_5xx(status, body)
        statuses.add(status)
        harness.check_bounds()

    run()
    done = harness.requests - start
    store = harness.app[RESPONSE_CACHE].store
    print(
        f"\nfuzz /metrics: {done} requests, statuses {sorted(statuses)}, "
        f"response cache {len(store)} entries / {store.currsize} bytes, "
        f"{store.evictions} evictions"
    )
    assert done >= METRICS_EXAMPLES
    assert {200, 400} <= statuses
    # The bounds were really exercised, not trivially met by an empty cache.
    assert store.evictions > 0


def test_cache_invalidate_parameters(harness: Harness) -> None:
    """Random POST /cache/invalidate parameters: 200/202/400/429 only, bounds kept."""
    start = harness.requests
    statuses: set[int] = set()
    param = st.one_of(
        st.tuples(st.just("collector"), collector_name),
        st.tuples(
            st.just("refresh"), st.one_of(st.sampled_from(["now", "next", "NOW"]), unicode_text)
        ),
        st.tuples(st.text(max_size=12), st.text(max_size=12)),
    )

    @settings(FUZZ, max_examples=INVALIDATE_EXAMPLES)
    @given(
        pairs=st.lists(param, max_size=4),
        raw=st.none() | raw_query,
        method=st.sampled_from(["POST", "GET", "PUT"]),
    )
    def run(pairs: list[tuple[str, str]], raw: str | None, method: str) -> None:
        url = build_url("/cache/invalidate", pairs, raw)
        status, body = harness.call(method, url, {})
        assert_no_5xx(status, body)
        if method != "POST" and len(str(url)) < MAX_LINE:
            assert status == 405
        statuses.add(status)
        harness.check_bounds()
        # Interleave a scrape so invalidations and the response cache interact.
        status, body = harness.call("GET", URL("/metrics"), {"Accept-Encoding": "gzip"})
        assert status == 200, body[:300]

    run()
    done = harness.requests - start
    print(f"\nfuzz /cache/invalidate: {done} requests, statuses {sorted(statuses)}")
    assert done >= 2 * INVALIDATE_EXAMPLES
    assert {200, 400, 405} <= statuses


def test_other_endpoints(harness: Harness) -> None:
    """Random paths, queries and headers on every other endpoint."""
    start = harness.requests
    paths = st.sampled_from(["/", "/cache/stats", "/-/healthy", "/-/ready", "/nope", "/metrics/"])

    @settings(FUZZ, max_examples=OTHER_EXAMPLES)
    @given(path=paths, pairs=params, raw=st.none() | raw_query, accept=accept)
    def run(path: str, pairs: list[tuple[str, str]], raw: str | None, accept: str) -> None:
        status, body = harness.call("GET", build_url(path, pairs, raw), {"Accept": accept})
        assert_no_5xx(status, body)

    run()
    done = harness.requests - start
    print(f"\nfuzz other endpoints: {done} requests")
    assert done >= OTHER_EXAMPLES
