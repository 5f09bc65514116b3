"""Warm restart of remote targets: a restarted exporter serves them without polling the BMCs."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import create_app
from exporter.probe_config import load_probe_config
from exporter.probe_snapshot import FILENAME
from exporter.settings import Settings
from tests.redfish_faults import PASSWORD, USER, FaultyRedfish

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
ROOT = "/redfish/v1/"


def settings(tmp_path: Path, modules: tuple[str, ...] = ("bmc",)) -> Settings:
    (tmp_path / "pass").write_text(PASSWORD + "\n")
    module = f"""
    driver: redfish
    scheme: http
    username: {USER}
    password_file: {tmp_path / "pass"}
    interval: 1h
    targets: ["127.0.0.1"]"""
    text = "modules:" + "".join(f"\n  {name}:{module}" for name in modules) + "\n"
    (tmp_path / "config.yml").write_text(text)
    config = load_probe_config(tmp_path / "config.yml")
    return Settings(collectors=(), probe=config, cache_dir=tmp_path / "cache")


async def probe(client: TestClient[Any, Any], target: str, module: str = "bmc") -> dict[str, float]:
    response = await client.get("/probe", params={"module": module, "target": target})
    assert response.status == 200
    text = await response.text()
    return {
        s.name + (f"/{s.labels['fan']}" if "fan" in s.labels else ""): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_a_restart_serves_cached_targets_without_polling(
    tmp_path: Path, aiohttp_server: ServerFactory, aiohttp_client: ClientFactory
) -> None:
    fake = FaultyRedfish()
    target = f"127.0.0.1:{(await aiohttp_server(fake.app())).port}"
    first = await aiohttp_client(create_app(settings(tmp_path), warm_up=False))
    assert (await probe(first, target))["hw_redfish_fan_speed_rpm/Fan1"] == 5400
    assert fake.requests[ROOT] == 1
    await first.close()  # shutdown: the final write
    saved = json.loads((tmp_path / "cache" / FILENAME).read_text())
    assert list(saved["collectors"]) == [f"bmc/{target}"]
    assert PASSWORD not in (tmp_path / "cache" / FILENAME).read_text()

    second = await aiohttp_client(create_app(settings(tmp_path), warm_up=False))
    got = await probe(second, target)
    assert got["hw_redfish_fan_speed_rpm/Fan1"] == 5400
    assert got["hwcache_collector_success"] == 1
    assert fake.requests[ROOT] == 1  # served from the restored entry: the BMC was not polled
    stats = await (await second.get("/cache/stats")).json()
    assert stats["targets"]["by_status"] == {"ok": 1}
    await second.close()


async def test_a_target_of_a_module_gone_is_not_restored(
    tmp_path: Path, aiohttp_server: ServerFactory, aiohttp_client: ClientFactory
) -> None:
    fake = FaultyRedfish()
    target = f"127.0.0.1:{(await aiohttp_server(fake.app())).port}"
    first = await aiohttp_client(create_app(settings(tmp_path, ("bmc", "old")), warm_up=False))
    await probe(first, target)
    await probe(first, target, "old")
    await first.close()
    second = await aiohttp_client(create_app(settings(tmp_path), warm_up=False))
    stats = await (await second.get("/cache/stats")).json()
    assert list(stats["targets"]["items"]) == [f"bmc/{target}"]
    await second.close()
