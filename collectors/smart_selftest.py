"""Self-test state from smartctl's JSON: in progress, last result and age per test type.

ATA: ``ata_smart_data.self_test.status`` (241-249 = in progress, with ``remaining_percent``)
and the self-test log (``ata_smart_self_test_log.{extended,standard}.table``, newest first,
``lifetime_hours`` counted modulo 65536 by the drive). NVMe (smartctl 7.4+):
``nvme_self_test_log`` with ``current_self_test_operation`` (0 = none running),
``current_self_test_completion_percent`` and a newest-first table whose entries may be null.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import SkipItem
from collectors.smart_parse import DeviceResult, Unreadable, number, section

# ATA log entries store the power-on hour in 16 bits: a drive past 65,535 h wraps around.
ATA_HOURS_WRAP = 65536
# ATA status byte, high nibble: 0 passed, 1 aborted by host, 2 interrupted by a reset,
# 3-8 failed (fatal, unknown, electrical, servo, read, handling damage), 15 in progress.
IN_PROGRESS = 0xF
NO_VERDICT = frozenset({1, 2, IN_PROGRESS})
# NVMe self-test result codes: 0 passed; 5, 6, 7 failed; 1-4, 8, 9 aborted (not a verdict).
NVME_PASSED = frozenset({0})
NVME_FAILED = frozenset({5, 6, 7})


@dataclass(frozen=True)
class LastTest:
    """The newest logged self-test of one type."""

    kind: str  # short, extended, conveyance, selective, ...
    passed: bool | None  # None: aborted or interrupted, no verdict
    hours: float  # power-on hours when it ran


@dataclass(frozen=True)
class SelfTests:
    """What one device says about its self-tests."""

    in_progress: bool
    remaining: float | None  # 0-1 while in progress
    power_on_hours: float | None
    last: tuple[LastTest, ...]
    wraps: bool  # ATA: logged hours are modulo 65536


def _kind(text: Any) -> str:
    """``Short offline`` / ``Extended`` / ``Conveyance offline`` → ``short``/``extended``/..."""
    words = str(text or "").split()
    return words[0].lower() if words else "unknown"


def _newest_per_kind(entries: list[LastTest]) -> tuple[LastTest, ...]:
    newest: dict[str, LastTest] = {}
    for entry in entries:  # the logs list the newest first
        newest.setdefault(entry.kind, entry)
    return tuple(newest.values())


def _ata(doc: dict[str, Any]) -> SelfTests | None:
    status = number(doc, "ata_smart_data", "self_test", "status", "value")
    log = section(doc, "ata_smart_self_test_log")
    table = section(log, "extended").get("table") or section(log, "standard").get("table")
    if status is None and not isinstance(table, list):
        return None
    in_progress = status is not None and int(status) >> 4 == IN_PROGRESS
    remaining = number(doc, "ata_smart_data", "self_test", "status", "remaining_percent")
    entries = []
    for row in table if isinstance(table, list) else []:
        hours = number(row, "lifetime_hours")
        if not isinstance(row, dict) or hours is None:
            continue
        passed = section(row, "status").get("passed")
        value = number(row, "status", "value")
        verdict = passed if isinstance(passed, bool) else None
        if value is not None and int(value) >> 4 in NO_VERDICT:
            verdict = None
        entries.append(LastTest(_kind(section(row, "type").get("string")), verdict, hours))
    return SelfTests(
        in_progress,
        remaining / 100 if in_progress and remaining is not None else None,
        number(doc, "power_on_time", "hours"),
        _newest_per_kind(entries),
        wraps=True,
    )


def _nvme(doc: dict[str, Any]) -> SelfTests | None:
    log = section(doc, "nvme_self_test_log")
    if not log:
        return None
    operation = number(log, "current_self_test_operation", "value") or 0
    done = number(log, "current_self_test_completion_percent")
    entries = []
    table = log.get("table")
    for row in table if isinstance(table, list) else []:
        result = number(row, "self_test_result", "value")
        hours = number(row, "power_on_hours")
        if not isinstance(row, dict) or result is None or hours is None or result == 0xF:
            continue
        verdict = True if result in NVME_PASSED else False if result in NVME_FAILED else None
        entries.append(
            LastTest(_kind(section(row, "self_test_code").get("string")), verdict, hours)
        )
    return SelfTests(
        operation != 0,
        1 - done / 100 if operation != 0 and done is not None else None,
        number(doc, "nvme_smart_health_information_log", "power_on_hours"),
        _newest_per_kind(entries),
        wraps=False,
    )


def self_tests(doc: dict[str, Any]) -> SelfTests | None:
    """The device's self-test state, or ``None`` when smartctl reported none."""
    return _nvme(doc) or _ata(doc)


def _age_hours(tests: SelfTests, test: LastTest) -> float | None:
    if tests.power_on_hours is None:
        return None
    age = tests.power_on_hours - test.hours
    if tests.wraps:
        age %= ATA_HOURS_WRAP
    return age if age >= 0 else None


def selftest_families(results: Sequence[DeviceResult], skip: SkipItem) -> list[Metric]:
    """``hw_smart_self_test_*`` for every device that reports self-tests."""
    running = GaugeMetricFamily(
        "hw_smart_self_test_in_progress", "1 while a self-test runs.", labels=["device"]
    )
    remaining = GaugeMetricFamily(
        "hw_smart_self_test_remaining_ratio",
        "Part of the running self-test still to do (0-1).",
        labels=["device"],
    )
    passed = GaugeMetricFamily(
        "hw_smart_self_test_last_passed",
        "1 if the newest logged self-test of this type passed, 0 if it failed "
        "(absent when it was aborted or interrupted).",
        labels=["device", "type"],
    )
    age = GaugeMetricFamily(
        "hw_smart_self_test_last_age_seconds",
        "Power-on time since the newest logged self-test of this type ran (hour resolution).",
        labels=["device", "type"],
    )
    for result in results:
        if result.doc is None:
            continue
        try:
            tests = self_tests(result.doc)
        except Unreadable as exc:
            skip(f"{result.device} self-tests", str(exc))
            continue
        if tests is None:
            continue
        running.add_metric([result.device], float(tests.in_progress))
        if tests.remaining is not None:
            remaining.add_metric([result.device], tests.remaining)
        for test in tests.last:
            labels = [result.device, test.kind]
            if test.passed is not None:
                passed.add_metric(labels, float(test.passed))
            if (hours := _age_hours(tests, test)) is not None:
                age.add_metric(labels, hours * 3600)
    return [running, remaining, passed, age]
