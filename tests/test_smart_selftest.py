"""SMART self-tests: in progress, last result and its age, from real smartctl captures."""

from __future__ import annotations

import json
from typing import Any

from collectors.base import CollectorContext
from collectors.smart import SmartCollector
from collectors.smart_parse import DeviceResult
from collectors.smart_selftest import LastTest, self_tests, selftest_families
from collectors.toolkit.runner import CommandRunner
from tests.exposition import value
from tests.support import FIXTURES, SMARTCTL, fake_path

RUNNING_ATA = "scrutiny-sat-WDC_WD140EDFZ-11A0VA0-sdb"  # smartctl -a, test 10% left
EXTENDED_LOG_ATA = "scrutiny-sat-Samsung_SSD_860_EVO_500GB-sda"  # smartctl -x: extended log
WRAPPED_ATA = "usbjmicron-Hitachi_HDS721050DLE630-sdc"  # failing, past 65,535 h
NVME = "nvme-null-Micron_7450_MTFDKCC3T8TFR-nvme11"  # real capture without a self-test log
NVME_LOGS = FIXTURES / "smartctl-selftest" / "nvme-self-test-log.handwritten.json"
HOUR = 3600.0


def load(stem: str) -> dict[str, Any]:
    """A smartctl capture."""
    doc: dict[str, Any] = json.loads((SMARTCTL / f"{stem}.json").read_text())
    return doc


def with_nvme_log(which: str) -> dict[str, Any]:
    """The real NVMe capture plus a hand-written ``nvme_self_test_log`` (smartctl 7.4 layout)."""
    doc = load(NVME)
    doc["nvme_self_test_log"] = json.loads(NVME_LOGS.read_text())[which]
    return doc


def test_ata_test_in_progress_and_newest_per_type() -> None:
    doc = load(RUNNING_ATA)
    tests = self_tests(doc)
    assert tests is not None
    assert tests.in_progress and tests.remaining == 0.10
    table = doc["ata_smart_self_test_log"]["standard"]["table"]
    newest_short = next(e for e in table if e["type"]["string"] == "Short offline")
    assert tests.last[0] == LastTest("short", True, newest_short["lifetime_hours"])
    assert {t.kind for t in tests.last} == {e["type"]["string"].split()[0].lower() for e in table}


def test_ata_extended_log_of_smartctl_x() -> None:
    doc = load(EXTENDED_LOG_ATA)
    assert "standard" not in doc["ata_smart_self_test_log"]
    tests = self_tests(doc)
    assert tests is not None and not tests.in_progress and tests.remaining is None
    by_kind = {t.kind: t for t in tests.last}
    assert by_kind["short"].hours == 14417 and by_kind["extended"].hours == 12667
    fams = selftest_families([DeviceResult("sda", True, doc=doc)], skip=_no_skip)
    poh = doc["power_on_time"]["hours"]
    labels = {"device": "sda", "type": "extended"}
    assert value(fams, "hw_smart_self_test_last_age_seconds", **labels) == (poh - 12667) * HOUR
    assert value(fams, "hw_smart_self_test_last_passed", **labels) == 1
    assert value(fams, "hw_smart_self_test_in_progress", device="sda") == 0
    assert value(fams, "hw_smart_self_test_remaining_ratio", device="sda") is None


def test_ata_log_hours_wrap_at_65536() -> None:
    doc = load(WRAPPED_ATA)  # 65,592 power-on hours; the newest log entries say 42, 18, 4
    table = doc["ata_smart_self_test_log"]["standard"]["table"]
    poh = doc["power_on_time"]["hours"]
    assert poh > 65536 and table[0]["lifetime_hours"] < poh - 65536
    fams = selftest_families([DeviceResult("sdc", True, doc=doc)], skip=_no_skip)
    short = {"device": "sdc", "type": "short"}
    age = value(fams, "hw_smart_self_test_last_age_seconds", **short)
    assert age == (poh - 65536 - table[0]["lifetime_hours"]) * HOUR
    extended = {"device": "sdc", "type": "extended"}
    assert value(fams, "hw_smart_self_test_last_passed", **extended) == 0  # read failure
    assert value(fams, "hw_smart_self_test_last_passed", **short) == 1


def test_nvme_running_test_failed_and_null_entries() -> None:
    fams = selftest_families([DeviceResult("nvme11", True, doc=with_nvme_log("running"))], _no_skip)
    poh = load(NVME)["nvme_smart_health_information_log"]["power_on_hours"]
    assert value(fams, "hw_smart_self_test_in_progress", device="nvme11") == 1
    assert value(fams, "hw_smart_self_test_remaining_ratio", device="nvme11") == 0.63
    extended = {"device": "nvme11", "type": "extended"}
    assert value(fams, "hw_smart_self_test_last_passed", **extended) == 0  # failed segments
    assert value(fams, "hw_smart_self_test_last_age_seconds", **extended) == (poh - 2300) * HOUR
    short = {"device": "nvme11", "type": "short"}
    assert value(fams, "hw_smart_self_test_last_passed", **short) == 1


def test_nvme_aborted_test_has_no_verdict_but_an_age() -> None:
    fams = selftest_families([DeviceResult("nvme11", True, doc=with_nvme_log("idle"))], _no_skip)
    extended = {"device": "nvme11", "type": "extended"}
    assert value(fams, "hw_smart_self_test_last_passed", **extended) is None
    assert value(fams, "hw_smart_self_test_last_age_seconds", **extended) is not None
    assert value(fams, "hw_smart_self_test_in_progress", device="nvme11") == 0


def test_no_self_test_data_exports_nothing() -> None:
    doc = load(NVME)
    assert self_tests(doc) is None
    fams = selftest_families([DeviceResult("nvme11", True, doc=doc)], _no_skip)
    assert all(not f.samples for f in fams)


async def test_through_the_collector_and_fake_smartctl() -> None:
    ctx = CollectorContext(
        runner=CommandRunner(env={"PATH": fake_path()}),
        options={"devices": f"{RUNNING_ATA},{EXTENDED_LOG_ATA}"},
    )
    fams = await SmartCollector(ctx).collect()
    assert value(fams, "hw_smart_self_test_in_progress", device=RUNNING_ATA) == 1
    assert value(fams, "hw_smart_self_test_in_progress", device=EXTENDED_LOG_ATA) == 0


def _no_skip(where: str, why: str) -> None:
    raise AssertionError(f"skipped {where}: {why}")
