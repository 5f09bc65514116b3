"""Alerting rules: promtool checks and unit tests, mutants, and a real Prometheus evaluating them."""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.prom import TEXT_ACCEPT, ScrapeJob, fakeable_collector_args, promtool, run_prometheus
from tests.support import PROCFS, REPO, SYSFS, run_exporter

ALERTS_DIR = REPO / "alerts"
RULES = ALERTS_DIR / "hwcache.rules.yml"
UNIT_TESTS = sorted((ALERTS_DIR / "tests").glob("*.yml"))
SEVERITIES = {"critical", "warning", "info"}
METRIC = re.compile(r"\bhw(?:cache)?_[a-z0-9_]+\b")
LABEL_REF = re.compile(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)")
TARGET_LABELS = {"instance", "job"}
NEVER_FIRES = "vector(1) == 0"

Samples = dict[str, list[tuple[dict[str, str], float]]]
AlertKey = tuple[str, frozenset[tuple[str, str]]]


def load_rules(path: Path = RULES) -> dict[str, dict[str, Any]]:
    """Alerting rules by alert name."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


ALERTS = load_rules()


def test_promtool_check_rules() -> None:
    """The rules file is valid for Prometheus (syntax, PromQL, templates)."""
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    """``promtool test rules alerts/tests/*.yml`` passes."""
    assert UNIT_TESTS, "no promtool unit tests in alerts/tests"
    result = promtool("test", "rules", *map(str, UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(UNIT_TESTS)


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    """Each alert has an eval expecting it (with annotations) and one expecting silence."""
    firing: set[str] = set()
    silent: set[str] = set()
    for path in UNIT_TESTS:
        doc = yaml.safe_load(path.read_text())
        assert [(path.parent / f).resolve() for f in doc["rule_files"]] == [RULES.resolve()]
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                expected = check.get("exp_alerts") or []
                (firing if expected else silent).add(check["alertname"])
                assert all("exp_annotations" in alert for alert in expected), check
    assert set(ALERTS) - firing == set()
    assert set(ALERTS) - silent == set()


def test_alert_conventions() -> None:
    """Severity label from a fixed set; summary and description naming the instance."""
    for name, rule in ALERTS.items():
        assert re.fullmatch(r"Hw(cache)?[A-Z][A-Za-z]+", name), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description"}, name
        for text in annotations.values():
            assert "$labels.instance" in text, name


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_unit_tests_catch_broken_rule(alert: str, tmp_path: Path) -> None:
    """Mutants of the rule (never firing / firing on every series) fail the unit tests."""
    first_metric = METRIC.search(ALERTS[alert]["expr"])
    assert first_metric is not None
    for mutant in (NEVER_FIRES, first_metric.group(0)):
        copy = tmp_path / mutant.replace(" ", "").replace("(", "").replace(")", "")
        shutil.copytree(ALERTS_DIR, copy)
        doc = yaml.safe_load(RULES.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alert:
                    rule["expr"] = mutant
        (copy / RULES.name).write_text(yaml.safe_dump(doc, sort_keys=False))
        tests = [copy / "tests" / p.name for p in UNIT_TESTS if alert in p.read_text()]
        result = promtool("test", "rules", *map(str, tests))
        assert result.returncode != 0, f"{alert} with expr {mutant!r} still passes"
        assert f"alertname: {alert}," in result.stdout + result.stderr


@pytest.fixture(scope="module")
def full_scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Samples]]:
    """A running exporter with every runnable collector, and its text exposition."""
    flags, _ = fakeable_collector_args()
    tmp_path = tmp_path_factory.mktemp("exporter")
    args = [f"--path.sysfs={SYSFS}", f"--path.procfs={PROCFS}", *flags]
    with run_exporter(args, tmp_path) as exporter:
        status, body = exporter.get("/metrics", {"Accept": TEXT_ACCEPT})
        assert status == 200
        samples: Samples = defaultdict(list)
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                samples[sample.name].append((sample.labels, sample.value))
        yield f"127.0.0.1:{exporter.port}", samples


def test_rules_use_exported_metrics_and_labels(full_scrape: tuple[str, Samples]) -> None:
    """Every metric a rule reads is exported, with every label its annotations print."""
    _, samples = full_scrape
    for name, rule in ALERTS.items():
        metrics = set(METRIC.findall(rule["expr"]))
        labels = set(LABEL_REF.findall(" ".join(rule["annotations"].values()))) - TARGET_LABELS
        for metric in metrics:
            assert samples.get(metric), f"{name}: {metric} is not exported"
            for sample_labels, _ in samples[metric]:
                assert labels <= set(sample_labels), f"{name}: {metric} lacks {labels}"


def expected_alerts(samples: Samples) -> set[AlertKey]:
    """Alerts the rules must raise on this scrape, computed independently of PromQL."""
    found: set[AlertKey] = set()

    def where(alert: str, metric: str, fires: Any) -> None:
        for labels, value in samples.get(metric, []):
            if fires(value, labels):
                found.add((alert, frozenset(labels.items())))

    def value_of(metric: str, labels: dict[str, str]) -> float:
        return next(v for other, v in samples[metric] if other == labels)

    where("HwcacheCollectorFailing", "hwcache_collector_success", lambda v, _: v == 0)
    interval = "hwcache_collector_interval_seconds"
    where(
        "HwcacheCacheTooOld",
        "hwcache_collector_cache_age_seconds",
        lambda v, labels: v > 3 * value_of(interval, labels),
    )
    where("HwSmartDiskFailing", "hw_smart_status_passed", lambda v, _: v == 0)
    where("HwNvmeCriticalWarning", "hw_nvme_critical_warning", lambda v, _: v > 0)
    threshold = "hw_nvme_available_spare_threshold_ratio"
    where(
        "HwNvmeSpareLow",
        "hw_nvme_available_spare_ratio",
        lambda v, labels: v < value_of(threshold, labels),
    )
    where("HwEdacUncorrectableErrors", "hw_edac_uncorrectable_errors_total", lambda v, _: v > 0)
    where("HwMdraidDegraded", "hw_mdraid_degraded", lambda v, _: v > 0)
    where("HwIpmiSensorCritical", "hw_ipmi_sensor_state", lambda v, _: v == 2)
    where("HwIpmiSensorWarning", "hw_ipmi_sensor_state", lambda v, _: v == 1)
    return found


def test_real_prometheus_raises_the_alerts(
    full_scrape: tuple[str, Samples], tmp_path: Path
) -> None:
    """Prometheus loads the rules, scrapes the exporter and raises exactly the expected alerts."""
    target, samples = full_scrape
    expected = expected_alerts(samples)
    assert expected, "the fixtures should trip at least one alert"
    assert {alert for alert, _ in expected} <= set(ALERTS)
    with run_prometheus([ScrapeJob("hwcache", target)], tmp_path, rule_files=[RULES]) as prom:
        prom.wait_for('count_over_time(up{job="hwcache"}[1m])', lambda v: v >= 2, timeout=20)
        prom.wait_for("count(ALERTS)", lambda v: v >= len(expected), timeout=10)
        active = prom.alerts()
    got = {
        (a["labels"]["alertname"], frozenset(series_labels(a["labels"]).items())) for a in active
    }
    assert got == expected
    for alert in active:
        rule = ALERTS[alert["labels"]["alertname"]]
        assert alert["state"] == ("pending" if "for" in rule else "firing"), alert
        assert alert["labels"]["severity"] == rule["labels"]["severity"]
        assert alert["labels"]["instance"] in alert["annotations"]["summary"]
        for text in alert["annotations"].values():
            assert "<no value>" not in text and "  " not in text, alert


def series_labels(labels: dict[str, str]) -> dict[str, str]:
    """An alert's labels without those Prometheus and the rule add."""
    return {k: v for k, v in labels.items() if k not in {"alertname", "severity", *TARGET_LABELS}}
