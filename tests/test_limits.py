"""--web.max-requests (503 past the limit, no queue) and request size limits (4xx, never 5xx)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from exporter.app import create_app
from exporter.limits import MAX_QUERY_PARAMS, PARSER_LIMITS
from exporter.settings import Settings
from tests.doubles import make_cache
from tests.support import Exporter, run_exporter

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


async def gated_client(aiohttp_client: ClientFactory, max_requests: int) -> Any:
    """An app whose collector blocks until the returned gate is set (requests stay open)."""
    cache, collectors, clock = make_cache("a")
    gate = collectors["a"].gate = asyncio.Event()
    settings = Settings(collectors=(), max_requests=max_requests, response_cache=False)
    client = await aiohttp_client(create_app(settings, clock=clock, cache=cache, warm_up=False))
    return client, gate


async def test_requests_past_the_limit_get_503_at_once(aiohttp_client: ClientFactory) -> None:
    client, gate = await gated_client(aiohttp_client, max_requests=2)
    held = [asyncio.create_task(client.get("/metrics")) for _ in range(2)]
    await asyncio.sleep(0.1)
    assert not any(task.done() for task in held)
    resp = await client.get("/metrics")
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert "--web.max-requests=2" in await resp.text()
    assert (await client.get("/cache/stats")).status == 503  # every endpoint that works ...
    assert (await client.get("/-/healthy")).status == 200  # ... except the probes
    assert (await client.get("/-/ready")).status == 200
    # The limit is on the handlers that do work, not around every request.
    assert (await client.get("/no-such-page")).status == 404
    gate.set()
    assert [(await task).status for task in held] == [200, 200]
    assert (await client.get("/metrics")).status == 200  # slots are released


async def test_zero_means_unlimited(aiohttp_client: ClientFactory) -> None:
    client, gate = await gated_client(aiohttp_client, max_requests=0)
    held = [asyncio.create_task(client.get("/metrics")) for _ in range(50)]
    await asyncio.sleep(0.2)
    assert not any(task.done() for task in held)
    gate.set()
    assert {(await task).status for task in held} == {200}


async def test_query_parameter_cap(aiohttp_client: ClientFactory) -> None:
    client, gate = await gated_client(aiohttp_client, max_requests=0)
    gate.set()
    names = "&".join(f"name[]=m{i}" for i in range(MAX_QUERY_PARAMS))
    assert (await client.get(f"/metrics?{names}")).status == 200
    resp = await client.get(f"/metrics?{names}&collect[]=a")
    assert resp.status == 400 and "too many query parameters" in await resp.text()


def test_max_requests_in_a_real_exporter(tmp_path: Path) -> None:
    args = [
        "--collector.disable-defaults",
        "--collector.synthetic",
        "--collector.synthetic.delay=3",
        "--collector.synthetic.samples=10",
        "--web.max-requests=2",
    ]
    # Not waiting for readiness: the first collection is still sleeping, so scrapes block.
    with run_exporter(args, tmp_path, wait_ready=False) as exporter, ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(exporter.get, "/metrics?collect[]=synthetic") for _ in range(2)]
        time.sleep(0.5)
        started = time.monotonic()
        overflow = [exporter.get("/metrics?collect[]=synthetic") for _ in range(2)]
        assert time.monotonic() - started < 1.0  # answered at once, not queued
        assert [status for status, _ in overflow] == [503, 503]
        assert exporter.get("/-/healthy")[0] == 200
        assert not any(future.done() for future in slow)
        results = [future.result(timeout=30) for future in slow]
        assert [status for status, _ in results] == [200, 200]
        assert all(b"hw_synthetic_value_0" in body for _, body in results)
        assert exporter.get("/metrics?collect[]=synthetic")[0] == 200


def raw_request(port: int, request: bytes) -> int:
    """Send raw bytes, return the HTTP status the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1."), data[:100]
    return int(data.split(b" ", 2)[1])


def get(path: str, headers: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode()


def rss_bytes(exporter: Exporter) -> int:
    for line in Path(f"/proc/{exporter.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_oversized_requests_get_4xx_in_a_real_exporter(tmp_path: Path) -> None:
    line_limit, field_limit = PARSER_LIMITS["max_line_size"], PARSER_LIMITS["max_field_size"]
    big_field = "X-Big: " + "b" * (field_limit - 100) + "\r\n"
    many = "".join(f"X-H{i}: v\r\n" for i in range(PARSER_LIMITS["max_headers"] + 1))
    cases = {
        "long query": get("/metrics?name[]=" + "q" * line_limit),
        "long header": get("/metrics", "X-Long: " + "h" * (field_limit + 1) + "\r\n"),
        "many headers": get("/metrics", many),
        "many parameters": get("/metrics?" + "&".join(["name[]=x"] * (MAX_QUERY_PARAMS + 1))),
        "many collect[]": get("/metrics?" + "&".join(["collect[]=cpu"] * (MAX_QUERY_PARAMS + 1))),
    }
    with run_exporter(["--collector.disable-defaults"], tmp_path) as exporter:
        for name, request in cases.items():
            status = raw_request(exporter.port, request)
            assert 400 <= status < 500, (name, status)
        near_limit = get("/metrics", big_field * 8)  # large but allowed
        assert raw_request(exporter.port, near_limit) == 200
        before = rss_bytes(exporter)
        for _ in range(40):
            for request in (*cases.values(), near_limit):
                assert raw_request(exporter.port, request) < 500
        assert rss_bytes(exporter) - before < 32 * 1024 * 1024
        assert exporter.get("/metrics")[0] == 200
