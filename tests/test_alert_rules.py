"""Alerting rules: promtool checks and unit tests, mutants, and a real Prometheus evaluating them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.prom import TEXT_ACCEPT, ScrapeJob, fakeable_collector_args, promtool, run_prometheus
from tests.support import FAKES, PROCFS, REPO, SMARTCTL, SYSFS, run_exporter

ALERTS_DIR = REPO / "alerts"
RULES = ALERTS_DIR / "hwcache.rules.yml"
UNIT_TESTS = sorted((ALERTS_DIR / "tests").glob("*.yml"))
SEVERITIES = {"critical", "warning", "info"}
METRIC = re.compile(r"\bhw(?:cache)?_[a-z0-9_]+\b")
LABEL_REF = re.compile(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)")
TARGET_LABELS = {"instance", "job"}
NEVER_FIRES = "vector(1) == 0"
# Top-level `or` (optionally `or on (...)`) between the sources a rule reads.
# smartctl fixtures of the host without nvme-cli: one NVMe copied as is, one worn out.
NVME_HEALTHY = "SAMSUNG_MZVL21T0HCLR-00B00_24"
NVME_WORN = "nvme-null-INTEL_SSDPE2KX010T8-nvme1"

Samples = dict[str, list[tuple[dict[str, str], float]]]
Scrape = tuple[str, Samples]
AlertKey = tuple[str, frozenset[tuple[str, str]]]


def load_rules(path: Path = RULES) -> dict[str, dict[str, Any]]:
    """Alerting rules by alert name."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


ALERTS = load_rules()
RECORDS = {
    rule["record"]: rule
    for group in yaml.safe_load(RULES.read_text())["groups"]
    for rule in group["rules"]
    if "record" in rule
}


def test_promtool_check_rules() -> None:
    """The rules file is valid for Prometheus (syntax, PromQL, templates)."""
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS) + len(RECORDS)} rules found" in result.stdout


def test_data_age_is_recorded_and_unit_tested() -> None:
    """The age the exporter no longer exports is a recording rule, checked by promtool tests."""
    assert RECORDS["hwcache_collector:data_age_seconds"]["expr"] == (
        "time() - hwcache_collector_last_success_timestamp_seconds"
    )
    tested = "\n".join(path.read_text() for path in UNIT_TESTS)
    assert "expr: hwcache_collector:data_age_seconds" in tested


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


def mutants(expr: str) -> list[str]:
    """Never firing, and a bare selector firing on every series."""
    first_metric = METRIC.search(expr)
    assert first_metric is not None
    return [NEVER_FIRES, first_metric.group(0)]


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_unit_tests_catch_broken_rule(alert: str, tmp_path: Path) -> None:
    """Mutants of the rule (see ``mutants``) fail the unit tests."""
    for index, mutant in enumerate(mutants(ALERTS[alert]["expr"])):
        copy = tmp_path / f"mutant{index}"
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


@contextlib.contextmanager
def scraped(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[Scrape]:
    """A running exporter's address and the samples of its text exposition."""
    with run_exporter(args, tmp_path, env) as exporter:
        status, body = exporter.get("/metrics", {"Accept": TEXT_ACCEPT})
        assert status == 200
        samples: Samples = defaultdict(list)
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                samples[sample.name].append((sample.labels, sample.value))
        yield f"127.0.0.1:{exporter.port}", samples


@pytest.fixture(scope="module")
def full_scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrape]:
    """A running exporter with every runnable collector, and its scrape."""
    flags, _ = fakeable_collector_args()
    args = [f"--path.sysfs={SYSFS}", f"--path.procfs={PROCFS}", *flags]
    with scraped(args, tmp_path_factory.mktemp("exporter")) as scrape:
        yield scrape


def smartctl_only_env(tmp_path: Path) -> dict[str, str]:
    """Environment of a host with smartctl (fake) but no nvme-cli, and a worn NVMe drive."""
    bin_dir, fixtures = tmp_path / "bin", tmp_path / "fixtures" / "smartctl"
    bin_dir.mkdir()
    fixtures.mkdir(parents=True)
    (bin_dir / "smartctl").symlink_to(FAKES / "smartctl")
    shutil.copy(SMARTCTL / f"{NVME_HEALTHY}.json", fixtures)
    doc = json.loads((SMARTCTL / f"{NVME_WORN}.json").read_text())
    health = doc["nvme_smart_health_information_log"]
    health["available_spare"] = health["available_spare_threshold"] // 2
    health["critical_warning"] = 1  # bit 0: available spare below threshold
    (fixtures / f"{NVME_WORN}.json").write_text(json.dumps(doc))
    # The real PATH minus any directory holding an nvme binary (python3 must still resolve).
    kept = [d for d in os.environ["PATH"].split(os.pathsep) if d and not Path(d, "nvme").exists()]
    return {
        "PATH": os.pathsep.join([str(bin_dir), *kept]),
        "FAKE_SMARTCTL_FIXTURES": str(fixtures),
        "FAKE_SMARTCTL_DEVICES": f"{NVME_HEALTHY},{NVME_WORN}",
    }


@pytest.fixture(scope="module")
def smartctl_only_scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrape]:
    """The smart collector on a host without nvme-cli (default --collector.smart.nvme-health)."""
    tmp_path = tmp_path_factory.mktemp("smartctl-only")
    args = [f"--path.sysfs={SYSFS}", f"--path.procfs={PROCFS}", "--collector.disable-defaults"]
    env = smartctl_only_env(tmp_path)
    with scraped([*args, "--collector.smart"], tmp_path, env) as scrape:
        yield scrape


def test_rules_use_exported_metrics_and_labels(
    full_scrape: Scrape, smartctl_only_scrape: Scrape
) -> None:
    """Every metric a rule reads is exported by one of the hosts, with the labels it prints."""
    (_, full), (_, smart_only) = full_scrape, smartctl_only_scrape
    # Both hosts export the NVMe health log as hw_nvme_*, read by nvme-cli or by smartctl.
    for host in (full, smart_only):
        assert "hw_nvme_critical_warning" in host
        assert not any(name.startswith("hw_smart_nvme_") for name in host)
    for name, rule in ALERTS.items():
        metrics = set(METRIC.findall(rule["expr"]))
        labels = set(LABEL_REF.findall(" ".join(rule["annotations"].values()))) - TARGET_LABELS
        for metric in metrics:
            samples = full.get(metric) or smart_only.get(metric)
            assert samples, f"{name}: {metric} is not exported"
            for sample_labels, _ in samples:
                assert labels <= set(sample_labels), f"{name}: {metric} lacks {labels}"
                if "nvme" in metric:  # one device naming whichever tool read the log
                    assert re.fullmatch(r"nvme\d+", sample_labels["device"]), sample_labels


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
        "hwcache_collector_last_success_timestamp_seconds",
        lambda v, labels: time.time() - v > 3 * value_of(interval, labels),
    )
    where("HwSmartDiskFailing", "hw_smart_status_passed", lambda v, _: v == 0)
    where("HwNvmeCriticalWarning", "hw_nvme_critical_warning", lambda v, _: v > 0)
    where(
        "HwNvmeSpareLow",
        "hw_nvme_available_spare_ratio",
        lambda v, labels: v < value_of("hw_nvme_available_spare_threshold_ratio", labels),
    )
    where("HwEdacUncorrectableErrors", "hw_edac_uncorrectable_errors_total", lambda v, _: v > 0)
    where("HwMdraidDegraded", "hw_mdraid_degraded", lambda v, _: v > 0)
    where("HwIpmiSensorCritical", "hw_ipmi_sensor_state", lambda v, _: v == 2)
    where("HwIpmiSensorWarning", "hw_ipmi_sensor_state", lambda v, _: v == 1)
    return found


def test_real_prometheus_raises_the_alerts(
    full_scrape: Scrape, smartctl_only_scrape: Scrape, tmp_path: Path
) -> None:
    """Prometheus scrapes both hosts and raises exactly the expected alerts for each."""
    scrapes = {"hwcache": full_scrape, "hwcache-smartctl-only": smartctl_only_scrape}
    expected = {
        (alert, target, labels)
        for target, samples in scrapes.values()
        for alert, labels in expected_alerts(samples)
    }
    assert {alert for alert, _, _ in expected} <= set(ALERTS)
    # The fixtures trip the NVMe alerts on both hosts, from nvme-cli and from smartctl.
    for nvme_alert in ("HwNvmeCriticalWarning", "HwNvmeSpareLow"):
        assert {t for a, t, _ in expected if a == nvme_alert} == {t for t, _ in scrapes.values()}
    jobs = [ScrapeJob(job, target) for job, (target, _) in scrapes.items()]
    with run_prometheus(jobs, tmp_path, rule_files=[RULES]) as prom:
        prom.wait_for("count(count_over_time(up[1m]) >= 2)", lambda v: v == 2, timeout=20)
        prom.wait_for("count(ALERTS)", lambda v: v >= len(expected), timeout=10)
        active = prom.alerts()
    got = {
        (a["labels"]["alertname"], a["labels"]["instance"], frozenset(series_labels(a).items()))
        for a in active
    }
    assert got == expected
    for alert in active:
        rule = ALERTS[alert["labels"]["alertname"]]
        assert alert["state"] == ("pending" if "for" in rule else "firing"), alert
        assert alert["labels"]["severity"] == rule["labels"]["severity"]
        assert alert["labels"]["instance"] in alert["annotations"]["summary"]
        for text in alert["annotations"].values():
            assert "<no value>" not in text and "  " not in text, alert


def series_labels(alert: dict[str, Any]) -> dict[str, str]:
    """An alert's labels without those Prometheus and the rule add."""
    skip = {"alertname", "severity", *TARGET_LABELS}
    return {k: v for k, v in alert["labels"].items() if k not in skip}
