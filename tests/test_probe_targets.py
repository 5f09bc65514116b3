"""Remote targets on /cache/stats (counts by status, paged) and on the landing page."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from exporter.app import create_app
from exporter.clock import FakeClock
from exporter.keys import PROBES
from exporter.probe_config import load_probe_config
from exporter.probe_target import parse_target
from exporter.settings import Settings
from tests.support import free_port

TARGETS = 250
FAILING = 3
ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def client(aiohttp_client: ClientFactory, tmp_path: Path) -> TestClient[Any, Any]:
    """An app with TARGETS cached targets: FAILING polled against closed ports, the rest pending."""
    (tmp_path / "pass").write_text("pw\n")
    (tmp_path / "config.yml").write_text(
        f"""
max_targets: 1000
modules:
  bmc:
    driver: redfish
    scheme: http
    username: u
    password_file: {tmp_path / "pass"}
    timeout: 5s
    targets: ["127.0.0.1"]
"""
    )
    config = load_probe_config(tmp_path / "config.yml")
    app = create_app(Settings(collectors=(), probe=config), clock=FakeClock(), warm_up=False)
    probes, module = app[PROBES], config.modules["bmc"]
    closed = {free_port() for _ in range(FAILING)}
    ports = sorted(closed | set(range(20000, 20000 + TARGETS - len(closed))))
    for port in ports:
        probes.entry(module, parse_target(f"127.0.0.1:{port}"))
    failing = [probes.key(module, parse_target(f"127.0.0.1:{port}")) for port in closed]
    await probes.cache.fresh(failing, 10)  # connection refused: status error
    return await aiohttp_client(app)


async def stats(client: TestClient[Any, Any], query: str = "") -> tuple[int, Any]:
    response = await client.get("/cache/stats" + query)
    return response.status, await response.json()


async def test_counts_by_status_and_the_first_page_sorted_by_name(
    client: TestClient[Any, Any],
) -> None:
    status, body = await stats(client)
    assert status == 200
    targets = body["targets"]
    assert targets["total"] == TARGETS and targets["matching"] == TARGETS
    assert targets["by_status"] == {"error": FAILING, "pending": TARGETS - FAILING}
    names = list(targets["items"])
    assert len(names) == 100 and names == sorted(names)
    first = targets["items"][names[0]]
    assert first["module"] == "bmc" and names[0] == f"bmc/{first['target']}"


async def test_offset_limit_and_status_select_a_page(client: TestClient[Any, Any]) -> None:
    _, every = await stats(client, f"?limit={TARGETS}")
    names = list(every["targets"]["items"])
    assert len(names) == TARGETS
    _, tail = await stats(client, f"?offset={TARGETS - 10}&limit=100")
    assert list(tail["targets"]["items"]) == names[-10:]
    _, errors = await stats(client, "?status=error")
    items = errors["targets"]["items"]
    assert errors["targets"]["matching"] == FAILING == len(items)
    assert all(item["status"] == "error" and item["last_error"] for item in items.values())


@pytest.mark.parametrize("query", ["?limit=0", "?limit=1001", "?offset=-1", "?status=bogus"])
async def test_malformed_paging_is_a_400(client: TestClient[Any, Any], query: str) -> None:
    status, body = await stats(client, query)
    assert status == 400 and body["error"]


async def test_landing_page_summarises_and_lists_failing_targets_first(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get("/")
    page = await response.text()
    assert response.status == 200
    assert f"{TARGETS} cached (at most 1000)" in page and f"error {FAILING}" in page
    rows = re.findall(r'<tr id="target-([^"]+)"[^>]*>.*?class="status (\w+)"', page)
    assert len(rows) == 50
    assert [status for _, status in rows[:FAILING]] == ["error"] * FAILING
    assert {status for _, status in rows[FAILING:]} == {"pending"}
    assert 'href="/cache/stats?status=error"' in page
