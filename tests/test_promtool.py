"""``promtool check metrics`` lints the full scrape of every collector that runs here."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import Collector

from tests.prom import TEXT_ACCEPT, fakeable_collector_args, promtool
from tests.support import PROCFS, SYSFS, run_exporter

# promlint findings we accept, each justified in docs/ecosystem.md; none today.
ALLOWED_WARNINGS: frozenset[str] = frozenset()
OPENMETRICS_ACCEPT = "application/openmetrics-text;version=1.0.0"


def lint(body: bytes) -> tuple[int, set[str]]:
    """promtool's exit status and the set of problem lines it printed."""
    result = promtool("check", "metrics", stdin=body)
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, {line.strip() for line in lines if line.strip()}


def samples(families: list[Metric]) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    """Sample names and label sets (values change between two scrapes: freshness ages)."""
    return {(s.name, frozenset(s.labels.items())) for f in families for s in f.samples}


def test_full_scrape_passes_promtool(tmp_path: Path) -> None:
    """All runnable collectors on fixture roots with fake tools: no promlint findings."""
    flags, names = fakeable_collector_args()
    args = [
        f"--path.sysfs={SYSFS}",
        f"--path.procfs={PROCFS}",
        *flags,
        "--collector.synthetic.samples=50",
    ]
    with run_exporter(args, tmp_path) as exporter:
        status, text = exporter.get("/metrics", {"Accept": TEXT_ACCEPT})
        om_status, openmetrics = exporter.get("/metrics", {"Accept": OPENMETRICS_ACCEPT})
    assert status == om_status == 200

    returncode, problems = lint(text)
    assert problems == ALLOWED_WARNINGS
    assert returncode == (3 if ALLOWED_WARNINGS else 0)

    families = list(parse_text(text.decode()))
    interval = next(f for f in families if f.name == "hwcache_collector_interval_seconds")
    assert {s.labels["collector"] for s in interval.samples} == set(names)
    # The same scrape as OpenMetrics parses too (one # EOF, counters with _total).
    assert openmetrics.endswith(b"# EOF\n") and openmetrics.count(b"# EOF") == 1
    om_families = list(parse_openmetrics(openmetrics.decode()))
    assert samples(om_families) == samples(families)


class _Bad(Collector):
    """A collector breaking the conventions promlint checks."""

    def collect(self) -> list[Metric]:
        return [
            GaugeMetricFamily("hw_bad_total", "Gauge with a counter suffix.", value=1),
            CounterMetricFamily("hw_fooBar", "camelCase counter.", value=1),
        ]


def test_lint_reports_convention_breaks() -> None:
    """The harness sees promlint problems (so the test above can fail)."""
    registry = CollectorRegistry()
    registry.register(_Bad())
    returncode, problems = lint(generate_latest(registry))
    assert returncode == 3
    assert 'hw_bad_total non-counter metrics should not have "_total" suffix' in problems
    assert "hw_fooBar_total metric names should be written in 'snake_case' not 'camelCase'" in (
        problems
    )


def test_lint_reports_unparsable_exposition() -> None:
    """A malformed body is an error, not a silent pass."""
    returncode, problems = lint(b'hw_x{device="a" 1\n')
    assert returncode == 1
    assert any("error while linting" in p for p in problems)
