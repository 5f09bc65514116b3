"""/probe with the redfish driver against a real aiohttp Redfish service with faults."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import create_app
from exporter.clock import FakeClock
from exporter.keys import PROBES
from exporter.probe_cache import ProbeCache
from exporter.probe_config import load_probe_config
from exporter.settings import Settings
from tests.redfish_faults import CHASSIS, PASSWORD, FaultyRedfish, probe_config

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
INTERVAL = 600.0


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels`` (None if absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and labels.items() <= s.labels.items():
                return float(s.value)
    return None


class Setup:
    """The fake BMC, the exporter's test client, its probe cache and clock."""

    def __init__(self, fake: FaultyRedfish, target: str, client: TestClient[Any, Any]) -> None:
        self.fake = fake
        self.target = target
        self.client = client
        self.probes: ProbeCache = client.app[PROBES]
        assert isinstance(self.probes.cache.clock, FakeClock)
        self.clock = self.probes.cache.clock

    async def probe(self, target: str | None = None, **headers: str) -> tuple[int, str]:
        """GET /probe for module bmc; returns status and body."""
        params = {"module": "bmc", "target": target or self.target}
        response = await self.client.get("/probe", params=params, headers=headers)
        return response.status, await response.text()

    def key(self) -> str:
        """The cache entry name of the default target."""
        return f"bmc/{self.target}"


@pytest.fixture
async def setup(
    aiohttp_server: ServerFactory, aiohttp_client: ClientFactory, tmp_path: Path
) -> Setup:
    fake = FaultyRedfish()
    server = await aiohttp_server(fake.app())
    module = {
        "interval": f"{INTERVAL:g}s",
        "timeout": "5s",
        "request_timeout": "1s",
        "max_response_bytes": 65536,
        "targets": ["127.0.0.1", "*.bmc.example.net"],
    }
    config = load_probe_config(probe_config(tmp_path, module, max_targets=4))
    app = create_app(Settings(collectors=(), probe=config), clock=FakeClock(), warm_up=False)
    return Setup(fake, f"127.0.0.1:{server.port}", await aiohttp_client(app))


async def test_session_login_and_every_metric(setup: Setup) -> None:
    status, text = await setup.probe()
    assert status == 200, text
    assert setup.fake.logins == 1
    assert sample(text, "hw_redfish_system_info", manufacturer="Contoso", system="1") == 1
    assert sample(text, "hw_redfish_system_power_on", system="1") == 1
    assert sample(text, "hw_redfish_system_health", system="1") == 0
    assert sample(text, "hw_redfish_memory_size_bytes", module="DIMM0") == 16 * 2**30
    assert sample(text, "hw_redfish_drive_health", drive="0") == 2
    assert sample(text, "hw_redfish_drive_capacity_bytes", drive="0") == 960197124096
    assert sample(text, "hw_redfish_chassis_health", chassis="1") == 1
    assert sample(text, "hw_redfish_temperature_celsius", sensor="Inlet") == 23.5
    assert sample(text, "hw_redfish_temperature_celsius", sensor="CPU1") is None  # null reading
    assert sample(text, "hw_redfish_fan_speed_rpm", fan="Fan1") == 5400
    assert sample(text, "hw_redfish_fan_speed_ratio", fan="Fan2") == 0.4
    assert sample(text, "hw_redfish_power_consumed_watts", control="System Power") == 212
    assert sample(text, "hw_redfish_power_supply_health", supply="PSU1") == 1
    assert sample(text, "hw_redfish_power_supply_input_watts", supply="PSU1") == 230
    labels = {"collector": "redfish", "module": "bmc", "target": setup.target}
    assert sample(text, "hwcache_collector_success", **labels) == 1
    assert sample(text, "hwcache_probe_targets") is None  # the exporter's own: on /metrics
    own = await (await setup.client.get("/metrics")).text()
    assert sample(own, "hwcache_probe_targets") == 1
    assert sample(own, "hwcache_probe_evictions_total") == 0


async def test_cached_until_the_interval_then_relogin_on_expired_session(setup: Setup) -> None:
    assert (await setup.probe())[0] == 200
    assert (await setup.probe())[0] == 200
    assert setup.fake.requests["/redfish/v1/"] == 1  # the second probe was a cache hit
    setup.fake.tokens.clear()  # the BMC forgot the session
    setup.clock.advance(INTERVAL)
    status, text = await setup.probe()
    assert status == 200
    assert setup.fake.logins == 2
    assert sample(text, "hwcache_collector_refreshes_total", result="success") == 2


async def test_refused_login_is_an_error_and_the_password_never_shows(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    setup.fake.password = "rotated"
    status, text = await setup.probe()
    assert status == 200
    assert sample(text, "hwcache_collector_success") == 0
    entry = setup.probes.cache.view(setup.key())
    assert "login: HTTP 401 (check the credentials)" in (entry.last_error or "")
    stats = await (await setup.client.get("/cache/stats")).text()
    assert PASSWORD not in text + stats + caplog.text + repr(setup.probes.config)


async def test_500_keeps_the_last_good_data_as_stale(setup: Setup) -> None:
    assert (await setup.probe())[0] == 200
    setup.fake.faults["/redfish/v1/"] = "500"
    setup.clock.advance(INTERVAL)
    status, text = await setup.probe()
    assert status == 200
    assert sample(text, "hw_redfish_temperature_celsius", sensor="Inlet") == 23.5
    assert sample(text, "hwcache_collector_success") == 0
    assert sample(text, "hwcache_collector_stale") == 1
    assert "HTTP 500" in (setup.probes.cache.view(setup.key()).last_error or "")


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("malformed", "malformed JSON"),
        ("huge", "200000 bytes > 65536"),
        ("stream", "larger than 65536 bytes"),
        ("500", "HTTP 500"),
    ],
)
async def test_faults_on_the_root_fail_the_poll(setup: Setup, fault: str, error: str) -> None:
    setup.fake.faults["/redfish/v1/"] = fault
    status, text = await setup.probe()
    assert status == 200
    assert sample(text, "hwcache_collector_success") == 0
    assert "hw_redfish_" not in text  # never succeeded: freshness only
    assert error in (setup.probes.cache.view(setup.key()).last_error or "")


@pytest.mark.parametrize("fault", ["malformed", "huge", "stream", "500"])
async def test_a_faulty_part_is_left_out(setup: Setup, fault: str) -> None:
    setup.fake.faults[CHASSIS + "/Thermal"] = fault
    status, text = await setup.probe()
    assert sample(text, "hwcache_collector_success") == 1
    assert sample(text, "hwcache_collector_unreadable_items") == 1
    assert sample(text, "hw_redfish_temperature_celsius", sensor="Inlet") is None
    assert sample(text, "hw_redfish_power_consumed_watts") == 212


async def test_slow_bmc_answers_by_the_scrape_deadline_and_times_out(setup: Setup) -> None:
    setup.fake.faults["/redfish/v1/"] = "slow"
    status, text = await setup.probe(**{"X-Prometheus-Scrape-Timeout-Seconds": "0.7"})
    assert status == 200
    assert "hw_redfish_" not in text
    inflight = setup.probes.cache.inflight(setup.key())
    assert inflight is not None  # the poll continues after the scrape gave up
    await inflight
    assert "no answer within 1s" in (setup.probes.cache.view(setup.key()).last_error or "")
    setup.fake.release.set()


async def test_concurrent_probes_poll_once(setup: Setup) -> None:
    results = await asyncio.gather(*(setup.probe() for _ in range(10)))
    assert {status for status, _ in results} == {200}
    assert setup.fake.requests["/redfish/v1/"] == 1
    assert setup.fake.logins == 1


@pytest.mark.parametrize(
    ("module", "target", "message"),
    [
        ("nope", "127.0.0.1", "unknown module 'nope'; configured modules: bmc"),
        ("bmc", "10.0.0.1", "target 10.0.0.1 is not in the allow-list of module 'bmc'"),
        ("bmc", "evil.example.org", "not in the allow-list"),
        ("bmc", "", "target is missing"),
        ("bmc", "http://127.0.0.1/", "not a URL"),
        ("bmc", "127.0.0.1:99999", "port must be 1-65535"),
        ("bmc", "bad_host!", "not a valid host name"),
        ("bmc", "127.0.0.1@10.0.0.1", "not a URL"),
    ],
)
async def test_refused_requests_make_no_connection(
    setup: Setup, module: str, target: str, message: str
) -> None:
    response = await setup.client.get("/probe", params={"module": module, "target": target})
    assert response.status == 400
    assert message in await response.text()
    assert not setup.fake.requests
    assert not setup.probes.cache.names


async def test_an_evicted_target_is_logged_out(setup: Setup, aiohttp_server: ServerFactory) -> None:
    others = [await aiohttp_server(setup.fake.app()) for _ in range(4)]  # max_targets is 4
    assert (await setup.probe())[0] == 200
    first = setup.fake.tokens.copy()
    for server in others:
        assert (await setup.probe(f"127.0.0.1:{server.port}"))[0] == 200
    assert setup.probes.evictions == 1
    await asyncio.wait_for(setup.fake.logged_out.wait(), 10)
    assert setup.fake.logouts == 1
    assert not first & setup.fake.tokens  # the evicted target's session ended
    assert len(setup.fake.tokens) == 4


async def test_shutdown_logs_out_of_every_cached_session(
    setup: Setup, aiohttp_server: ServerFactory
) -> None:
    other = await aiohttp_server(setup.fake.app())
    assert (await setup.probe())[0] == 200
    assert (await setup.probe(f"127.0.0.1:{other.port}"))[0] == 200
    assert len(setup.fake.tokens) == 2
    await setup.probes.close()
    assert setup.fake.logouts == 2 and not setup.fake.tokens


async def test_invalidating_one_target_polls_it_again_rate_limited(setup: Setup) -> None:
    assert (await setup.probe())[0] == 200
    assert (await setup.probe())[0] == 200
    assert setup.fake.requests["/redfish/v1/"] == 1
    response = await setup.client.post("/cache/invalidate", params={"target": setup.key()})
    assert response.status == 200
    reply = await response.json()
    assert reply["invalidated"] == [] and reply["invalidated_targets"] == [setup.key()]
    assert (await setup.probe())[0] == 200
    assert setup.fake.requests["/redfish/v1/"] == 2  # polled again, once
    again = await setup.client.post("/cache/invalidate", params={"target": setup.key()})
    assert again.status == 429
    assert setup.key() in (await again.json())["targets"]
    unknown = await setup.client.post("/cache/invalidate", params={"target": "bmc/10.9.9.9"})
    assert unknown.status == 400
    assert "unknown or disabled target 'bmc/10.9.9.9'" in (await unknown.json())["error"]


async def test_waiting_for_a_poll_takes_no_request_slot(
    aiohttp_server: ServerFactory, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    fake = FaultyRedfish()
    fake.faults["/redfish/v1/"] = "slow"
    server = await aiohttp_server(fake.app())
    module = {"timeout": "60s", "request_timeout": "30s"}
    config = load_probe_config(probe_config(tmp_path, module))
    settings = Settings(collectors=(), probe=config, max_requests=2)
    client = await aiohttp_client(create_app(settings, clock=FakeClock(), warm_up=False))
    params = {"module": "bmc", "target": f"127.0.0.1:{server.port}"}
    waiting = [asyncio.create_task(client.get("/probe", params=params)) for _ in range(5)]
    for _ in range(500):  # until the one poll reaches the BMC
        if fake.requests["/redfish/v1/"]:
            break
        await asyncio.sleep(0.01)
    assert fake.requests["/redfish/v1/"] == 1
    assert not any(task.done() for task in waiting)  # five scrapes wait, none was refused
    assert (await client.get("/cache/stats")).status == 200  # and both slots are free
    fake.release.set()
    assert [(await task).status for task in waiting] == [200] * 5


async def test_unchanged_target_is_answered_with_the_stored_body(setup: Setup) -> None:
    params = {"module": "bmc", "target": setup.target}
    first = await setup.client.get("/probe", params=params)
    second = await setup.client.get("/probe", params=params)
    assert first.headers["X-Hwcache-Response"] == "miss"
    assert second.headers["X-Hwcache-Response"] == "hit"
    assert await second.read() == await first.read()
    openmetrics = {"Accept": "application/openmetrics-text;version=1.0.0"}
    other = await setup.client.get("/probe", params=params, headers=openmetrics)
    assert other.headers["X-Hwcache-Response"] == "miss"  # one body per format
    assert (await other.text()).endswith("# EOF\n")
    setup.fake.tree[CHASSIS + "/Thermal"]["Temperatures"][0]["ReadingCelsius"] = 31.0
    setup.clock.advance(INTERVAL)  # the data expires: the body says stale, then new data
    third = await setup.client.get("/probe", params=params)
    assert third.headers["X-Hwcache-Response"] == "miss"
    assert sample(await third.text(), "hw_redfish_temperature_celsius", sensor="Inlet") == 31.0
    assert setup.fake.requests["/redfish/v1/"] == 2
