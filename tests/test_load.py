"""Load: 500 concurrent scrapers over loopback; every request answered (200 or 503), none lost."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from collectors.registry import load_all
from exporter.cli import build_parser
from tests.support import FIXTURE_ARGS, run_exporter

SCRAPERS = 500
DEFAULT_MAX_REQUESTS: int = build_parser(load_all()).get_default("max_requests")
# Every scrape finds the synthetic collector due and waits for its refresh: this keeps
# all scrapes in flight at once, which is what --web.max-requests bounds.
REFRESH_DELAY = 2.0
ARGS = [
    *FIXTURE_ARGS,
    "--collector.cpu",
    "--collector.memory",
    "--collector.synthetic",
    "--collector.synthetic.samples=500",
    f"--collector.synthetic.delay={REFRESH_DELAY:g}",
    "--collector.synthetic.interval=1s",
    "--collector.synthetic.timeout=30s",
]
BAD_LOG = re.compile(r"level=error|\bERROR\b|Traceback")


@dataclass
class Outcome:
    """What one scraper got."""

    status: int | None
    latency: float
    error: str | None = None


async def scrape(session: aiohttp.ClientSession, start: asyncio.Event, i: int) -> Outcome:
    """Wait for the start signal, then one GET /metrics (its own connection)."""
    await start.wait()
    began = time.monotonic()
    headers = {"Accept-Encoding": "gzip"} if i % 2 else {}
    try:
        async with session.get(f"/metrics?scraper={i % 50}", headers=headers) as resp:
            body = await resp.read()
            if resp.status == 200:
                assert b"hw_synthetic_value_0" in body
            return Outcome(resp.status, time.monotonic() - began)
    except (aiohttp.ClientError, TimeoutError, AssertionError) as exc:
        return Outcome(None, time.monotonic() - began, f"{type(exc).__name__}: {exc}")


async def storm(base: str) -> list[Outcome]:
    """``SCRAPERS`` simultaneous scrapes through one unlimited connector."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=45)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:
        start = asyncio.Event()
        tasks = [asyncio.create_task(scrape(session, start, i)) for i in range(SCRAPERS)]
        await asyncio.sleep(0.1)
        start.set()
        return await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)


@pytest.mark.parametrize("max_requests", [None, 0], ids=["default-limit", "unlimited"])
def test_500_concurrent_scrapers(tmp_path: Path, max_requests: int | None) -> None:
    args = ARGS if max_requests is None else [*ARGS, f"--web.max-requests={max_requests}"]
    limit = DEFAULT_MAX_REQUESTS if max_requests is None else max_requests
    with run_exporter(args, tmp_path) as exporter:
        time.sleep(1.2)  # the 1s interval passes: the storm's first scrape starts a refresh
        began = time.monotonic()
        outcomes = asyncio.run(storm(exporter.base))
        elapsed = time.monotonic() - began
        status, _ = exporter.get("/metrics")
        log = exporter.logs()

    statuses = Counter(o.status for o in outcomes)
    errors = [o.error for o in outcomes if o.error]
    # A scrape slower than half the refresh delay waited for the refresh: it was admitted
    # while all the others that waited were in flight too.
    waited = sum(1 for o in outcomes if o.status == 200 and o.latency >= REFRESH_DELAY / 2)
    print(
        f"\nload[max-requests={limit}]: {SCRAPERS} concurrent scrapers in {elapsed:.1f}s: "
        f"{statuses[200]}x200, {statuses[503]}x503, {len(errors)} errors, "
        f"{waited} admitted while the refresh ran, "
        f"max latency {max(o.latency for o in outcomes):.2f}s"
    )
    assert errors == [], errors[:5]
    assert len(outcomes) == SCRAPERS
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] + statuses[503] == SCRAPERS
    assert status == 200, "exporter unhealthy after the storm"
    assert not BAD_LOG.search(log), log[-3000:]
    if limit:
        assert 0 < waited <= limit, (waited, statuses)
        assert statuses[503] > 0
    else:
        assert statuses[200] == SCRAPERS
        assert waited > DEFAULT_MAX_REQUESTS, "the unlimited case never exceeded the default"


MALFORMED = [
    b"GET /metrics?x=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello to a plain-HTTP port\r\n\r\n",
    b"JRMI\x00\x02K\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(200)) + b"\r\n",
]


async def send_raw(port: int, payload: bytes) -> bytes:
    """Write a raw request and return the status line of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), timeout=30)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def test_malformed_requests_get_400_without_error_logs(tmp_path: Path) -> None:
    with run_exporter([*FIXTURE_ARGS, "--collector.cpu"], tmp_path) as exporter:

        async def flood() -> list[bytes]:
            payloads = MALFORMED * 40
            return await asyncio.gather(*(send_raw(exporter.port, p) for p in payloads))

        lines = asyncio.run(flood())
        status, _ = exporter.get("/metrics")
        log = exporter.logs()
    print(f"\nmalformed: {len(lines)} requests, answers {Counter(lines)}")
    assert all(re.match(rb"HTTP/1\.[01] 400 ", line) for line in lines), Counter(lines)
    assert status == 200
    assert not BAD_LOG.search(log), log[-3000:]
