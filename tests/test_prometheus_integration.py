"""A real Prometheus server scrapes the exporter: data arrives, slow collectors run once."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collectors.cpu import parse_cpuinfo
from tests.prom import TEXT_ACCEPT, RecordingProxy, ScrapeJob, run_prometheus
from tests.prom import supports_scrape_protocols as prometheus_has_scrape_protocols
from tests.support import PROCFS, SYSFS, Exporter, run_exporter

SYNTHETIC_SAMPLES = 200
SYNTHETIC_DELAY = 1.0
SYNTHETIC_INTERVAL = 3600.0
MIN_SCRAPES = 10
COLLECTORS = ("cpu", "memory", "synthetic")
FRESHNESS = (
    "hwcache_collector_success",
    "hwcache_collector_stale",
    "hwcache_collector_duration_seconds",
    "hwcache_collector_last_success_timestamp_seconds",
    "hwcache_collector_last_attempt_timestamp_seconds",
    "hwcache_collector_next_refresh_timestamp_seconds",
    "hwcache_collector_interval_seconds",
    "hwcache_collector_refreshes_total",
)
OPENMETRICS = "application/openmetrics-text"
TEXT = "text/plain; version=0.0.4"
SYNTHETIC = 'collector="synthetic"'


def exporter_args(response_cache: bool) -> list[str]:
    """Fixture roots, a few cheap collectors and the slow synthetic one."""
    args = [
        f"--path.sysfs={SYSFS}",
        f"--path.procfs={PROCFS}",
        "--collector.disable-defaults",
        *(f"--collector.{name}" for name in COLLECTORS),
        f"--collector.synthetic.samples={SYNTHETIC_SAMPLES}",
        f"--collector.synthetic.delay={SYNTHETIC_DELAY:g}",
        f"--collector.synthetic.interval={SYNTHETIC_INTERVAL:g}s",
    ]
    return args if response_cache else [*args, "--no-web.response-cache"]


def hw_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every ``hw_*`` sample of a text exposition keyed by name and label set."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("hw_")
    }


def series_key(metric: dict[str, str]) -> tuple[str, frozenset[tuple[str, str]]]:
    """A Prometheus series as (name, labels) without the target labels Prometheus adds."""
    labels = {k: v for k, v in metric.items() if k not in {"__name__", "job", "instance"}}
    return metric["__name__"], frozenset(labels.items())


@pytest.mark.parametrize("case", ["openmetrics", "text", "no-response-cache"])
def test_prometheus_scrapes_cached_exporter(case: str, tmp_path: Path) -> None:
    """Prometheus ingests everything, every scrape is up, the slow collector ran only once."""
    response_cache = case != "no-response-cache"
    text_case = case == "text"
    # Prometheus 2.42 has no scrape_protocols: then the proxy itself asks for the text format.
    override = TEXT_ACCEPT if text_case and not prometheus_has_scrape_protocols(tmp_path) else None
    protocols = {"scrape_protocols": ["PrometheusText0.0.4"]} if text_case and not override else {}
    with contextlib.ExitStack() as stack:
        exporter = stack.enter_context(run_exporter(exporter_args(response_cache), tmp_path))
        direct = f"127.0.0.1:{exporter.port}"
        proxy = stack.enter_context(RecordingProxy(direct, accept=override))
        jobs = [ScrapeJob("hwcache", proxy.address if override else direct, protocols)]
        if override is None:
            jobs.append(ScrapeJob("probe", proxy.address, protocols))
        prom = stack.enter_context(run_prometheus(jobs, tmp_path))

        prom.wait_for(
            'count_over_time(up{job="hwcache"}[1m])', lambda v: v >= MIN_SCRAPES, timeout=30
        )
        status, stats_body = exporter.get("/cache/stats")
        status_text, direct_text = exporter.get("/metrics", {"Accept": "text/plain"})

        assert prom.value('min_over_time(up{job="hwcache"}[1m])') == 1
        assert status == status_text == 200
        stats = json.loads(stats_body)

        # Every hardware sample the exporter serves is in Prometheus with the same labels/value.
        served = hw_samples(direct_text.decode())
        stored = {
            series_key(r["metric"]): float(r["value"][1])
            for r in prom.query('{__name__=~"hw_.+",job="hwcache"}')
        }
        assert stored == served
        cpu, _, _, _ = parse_cpuinfo((PROCFS / "cpuinfo").read_text())
        info = prom.query('hw_cpu_info{job="hwcache"}')
        assert [r["metric"]["model_name"] for r in info] == [cpu["model name"]]
        synthetic = prom.query('hw_synthetic_value_0{job="hwcache"}')
        assert len(synthetic) == SYNTHETIC_SAMPLES // 10
        # collectors/synthetic.py: sample n goes to family n % 10 with device "dev{n // 100}".
        devices = {f"dev{n // 100}" for n in range(0, SYNTHETIC_SAMPLES, 10)}
        assert {r["metric"]["device"] for r in synthetic} == devices
        assert prom.value('scrape_samples_scraped{job="hwcache"}') > SYNTHETIC_SAMPLES

        for name in FRESHNESS:
            got = {r["metric"]["collector"] for r in prom.query(f'{name}{{job="hwcache"}}')}
            assert set(COLLECTORS) <= got, name
        assert prom.value(f'hwcache_collector_success{{{SYNTHETIC},job="hwcache"}}') == 1
        interval = prom.value(f'hwcache_collector_interval_seconds{{{SYNTHETIC},job="hwcache"}}')
        assert interval == SYNTHETIC_INTERVAL

        # The point of the product: a 1 s collector, 10+ scrapes, still exactly one refresh,
        # scrapes far faster than the collector, and the cached data visibly ageing (the age
        # is the documented expression, not an exported value).
        refreshes = (
            f'hwcache_collector_refreshes_total{{{SYNTHETIC},result="success",job="hwcache"}}'
        )
        assert prom.value(f"count_over_time({refreshes}[1m])") >= MIN_SCRAPES - 1
        assert prom.value(f"min_over_time({refreshes}[1m])") == 1
        assert prom.value(f"max_over_time({refreshes}[1m])") == 1
        assert stats["collectors"]["synthetic"]["refreshes"] == {"success": 1}
        assert stats["collections_started"] == len(COLLECTORS)
        duration = prom.value(f'hwcache_collector_duration_seconds{{{SYNTHETIC},job="hwcache"}}')
        assert duration >= SYNTHETIC_DELAY
        assert prom.value('max_over_time(scrape_duration_seconds{job="hwcache"}[1m])') < duration
        last = f'hwcache_collector_last_success_timestamp_seconds{{{SYNTHETIC},job="hwcache"}}'
        assert prom.value(f"max_over_time({last}[1m]) - min_over_time({last}[1m])") == 0
        age = f"time() - {last}"
        assert prom.value(f"max_over_time(({age})[1m:1s]) - min_over_time(({age})[1m:1s])") >= 5

        # Which format the exporter really answered Prometheus with.
        assert proxy.exchanges, "Prometheus never scraped the recording proxy"
        assert {e.status for e in proxy.exchanges} == {200}
        if text_case:
            assert all(e.content_type.startswith(TEXT) for e in proxy.exchanges), proxy.exchanges
        else:
            assert all(OPENMETRICS in e.accept_in for e in proxy.exchanges), proxy.exchanges
            assert all(e.content_type.startswith(OPENMETRICS) for e in proxy.exchanges)
            content_type = exporter_reply_type(exporter, proxy.exchanges[0].accept_in)
            assert content_type.startswith(OPENMETRICS)

        response_stats = stats["response_cache"]
        assert response_stats["enabled"] is response_cache
        hits = prom.query('hwcache_response_cache_hits_total{job="hwcache"}')
        if response_cache:
            # The body is the same until the data changes: every scrape after the first hits.
            assert response_stats["hits"] >= MIN_SCRAPES - 1
            # Present, but counted into the cached body only when it is next rendered.
            assert len(hits) == 1
        else:
            assert hits == []


def exporter_reply_type(exporter: Exporter, accept: str) -> str:
    """Content-Type the exporter answers a direct request with Prometheus' own Accept header."""
    request = urllib.request.Request(f"{exporter.base}/metrics", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.headers["Content-Type"])
