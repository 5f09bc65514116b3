"""One collector's bad families must not break the whole /metrics exposition."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

from exporter.cache import CacheEntry, MetricCache
from exporter.clock import FakeClock
from tests.doubles import ClientFactory, CountingCollector, start_cache

OPENMETRICS = "application/openmetrics-text;version=1.0.0"


class Twice(CountingCollector):
    """Returns its family twice (a collector bug the framework does not catch)."""

    async def collect(self) -> Sequence[Metric]:
        families = list(await super().collect())
        return families + families


class NotANumber(CountingCollector):
    """Passes a tool's raw "N/A" through as a sample value."""

    async def collect(self) -> Sequence[Metric]:
        family = GaugeMetricFamily("hw_test_bad_watts", "Bad.", labels=["device"])
        family.add_metric(["psu0"], "N/A")  # type: ignore[arg-type]
        return [family]


async def scrape_om(
    aiohttp_client: ClientFactory, *collectors: tuple[str, CountingCollector]
) -> str:
    clock = FakeClock()
    cache = MetricCache([CacheEntry(n, c, 60.0, 5.0) for n, c in collectors], clock)
    client = await start_cache(aiohttp_client, cache, clock)
    resp = await client.get("/metrics", headers={"Accept": OPENMETRICS})
    assert resp.status == 200, await resp.text()
    return await resp.text()


async def test_same_family_from_two_collectors_is_valid_openmetrics(
    aiohttp_client: ClientFactory,
) -> None:
    body = await scrape_om(
        aiohttp_client, ("a", CountingCollector("x")), ("b", CountingCollector("x"))
    )
    list(parse_om(body))  # raises "Clashing name: hw_test_x_value"


async def test_duplicate_family_within_one_collector_is_valid_openmetrics(
    aiohttp_client: ClientFactory,
) -> None:
    body = await scrape_om(aiohttp_client, ("a", Twice("x")))
    list(parse_om(body))


async def test_unrenderable_family_fails_its_collector_not_every_scrape(
    aiohttp_client: ClientFactory,
) -> None:
    body = await scrape_om(
        aiohttp_client, ("good", CountingCollector("good")), ("bad", NotANumber("bad"))
    )
    assert "hw_test_good_value" in body
