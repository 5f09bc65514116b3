"""The Grafana dashboard: every query is valid PromQL and has data from the first scrape.

A real Prometheus scrapes the exporter running on the fixture machine (the golden e2e
setup). Every panel's queries, with the template variables set to All, are evaluated at
the timestamp of the first scrape, when exactly one sample of each series exists: panels
needing a second scrape (rate, increase, deriv) would come back empty there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from dashboards.generate import OUTPUT, render
from tests.e2e import GOLDEN, GOLDEN_ARGS
from tests.prom import Prometheus, ScrapeJob, run_prometheus
from tests.support import run_exporter

JOB = "hwcache"
# Grafana's values for "All" (allValue) and its interval macros.
VARIABLES = {
    "$job": ".*",
    "$instance": ".*",
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
}
METRIC = re.compile(r"\b(hw_[a-z0-9_]+|hwcache_[a-z0-9_]+)\b")
LABEL_VALUES = re.compile(r"^label_values\((.*), *(\w+)\)$")


def load() -> dict[str, Any]:
    """The checked-in dashboard JSON."""
    data: dict[str, Any] = json.loads(OUTPUT.read_text())
    return data


def expand(expr: str) -> str:
    """A query as Grafana sends it with every variable set to All."""
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unexpanded variable in {expr}"
    return expr


def queries() -> list[tuple[str, str]]:
    """(panel title/refId, expression) of every query of every panel."""
    return [
        (f"{panel['title']}/{target['refId']}", target["expr"])
        for panel in load()["panels"]
        for target in panel.get("targets", [])
    ]


@pytest.fixture(scope="module")
def first_scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, float]]:
    """Prometheus scraping the fixture exporter, and the time of its first scrape."""
    tmp = tmp_path_factory.mktemp("dashboard")
    with (
        run_exporter(GOLDEN_ARGS, tmp) as exporter,
        run_prometheus([ScrapeJob(JOB, f"127.0.0.1:{exporter.port}")], tmp) as prom,
    ):
        prom.wait_for(f'up{{job="{JOB}"}}', lambda v: v == 1, timeout=60)
        (series,) = prom.api("/api/v1/query", query=f'up{{job="{JOB}"}}[10m]')["result"]
        yield prom, float(series["values"][0][0])


def test_checked_in_json_is_the_generators_output() -> None:
    assert OUTPUT.read_text() == render(), "run `make dashboard`"


def test_panels_are_well_formed() -> None:
    panels = load()["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), ids
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    titles = [panel["title"] for panel in panels if panel["type"] == "row"]
    assert titles == [
        "Fleet overview",
        "Disks",
        "BMC sensors and power",
        "GPUs",
        "RAID arrays and memory",
    ]


def test_every_metric_name_exists() -> None:
    """A misspelt name would never return data: every name is checked against the golden scrape."""
    golden = set(re.findall(r"^# TYPE (\S+)", GOLDEN.read_text(), re.M))
    exposed = golden | {f"{name}_total" for name in golden} | {"up"}
    for where, expr in queries():
        for name in METRIC.findall(expr):
            assert name in exposed, (where, name)


@pytest.mark.parametrize(("where", "expr"), queries(), ids=[w for w, _ in queries()])
def test_query_has_data_on_the_first_scrape(
    first_scrape: tuple[Prometheus, float], where: str, expr: str
) -> None:
    prom, at = first_scrape
    data = prom.api("/api/v1/query", query=expand(expr), time=f"{at:.3f}")
    assert data["resultType"] == "vector", (where, data)
    assert data["result"], f"{where}: no data on the first scrape: {expand(expr)}"
    values = [float(sample["value"][1]) for sample in data["result"]]
    assert all(v == v for v in values), (where, values)  # no NaN


def test_template_variables_list_the_target(first_scrape: tuple[Prometheus, float]) -> None:
    prom, at = first_scrape
    variables = {v["name"]: v for v in load()["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    expected = {"job": JOB, "instance": None}
    for name, value in expected.items():
        found = LABEL_VALUES.match(variables[name]["query"]["query"])
        assert found, variables[name]
        selector, label = expand(found.group(1)), found.group(2)
        params = {"match[]": selector, "start": f"{at - 60:.3f}", "end": f"{at:.3f}"}
        values = prom.api(f"/api/v1/label/{label}/values", **params)
        assert values, (name, selector)
        if value is not None:
            assert values == [value], values
