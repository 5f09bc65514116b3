"""Power-mode policy: which sleeping disks smartctl skips, per collector and per device."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from collectors.base import CollectorContext
from collectors.registry import load_all
from collectors.smart import SmartCollector
from collectors.toolkit.runner import CommandRunner
from exporter.cli import build_parser
from tests.exposition import value
from tests.support import fake_path

PATH = fake_path(str(Path(sys.executable).parent))
ATA = "HGST_HUS724020ALE640_28"
OTHER = "sat-Seagate_Enterprise_Capacity_3.5_HDD-ST8000NM0016-1U3101-sds"


def collector(options: dict[str, str], state: str, asleep: str = ATA) -> SmartCollector:
    """The smart collector over two fake disks; ``asleep`` is in power ``state``."""
    env = {
        **os.environ,
        "PATH": PATH,
        "FAKE_SMARTCTL_MODE": state,
        "FAKE_SMARTCTL_MODE_DEVICES": f"/dev/{asleep}",
    }
    ctx = CollectorContext(
        runner=CommandRunner(env=env), options={"devices": f"{ATA},{OTHER}", **options}
    )
    return SmartCollector(ctx)


@pytest.mark.parametrize(
    ("state", "nocheck", "skipped"),
    [
        ("sleep", "never", False),
        ("sleep", "sleep", True),
        ("standby", "sleep", False),
        ("standby", "standby", True),
        ("idle", "standby", False),
        ("idle", "idle", True),
        ("standby", "idle", True),
    ],
)
async def test_policy_follows_smartctl_power_order(state: str, nocheck: str, skipped: bool) -> None:
    fams = await collector({"nocheck": nocheck}, state).collect()
    assert value(fams, "hw_smart_device_standby", device=ATA) == float(skipped)
    assert value(fams, "hw_smart_device_readable", device=ATA) == 1  # asleep is not a failure
    assert (value(fams, "hw_smart_temperature_celsius", device=ATA) is None) == skipped
    assert value(fams, "hw_smart_device_standby", device=OTHER) == 0


async def test_per_device_override_reads_a_disk_that_claims_standby() -> None:
    options = {"nocheck": "standby", "nocheck-override": f"/dev/{ATA}=never"}
    fams = await collector(options, "standby").collect()
    assert value(fams, "hw_smart_device_standby", device=ATA) == 0
    assert value(fams, "hw_smart_temperature_celsius", device=ATA) is not None
    fams = await collector({"nocheck-override": f"{OTHER}=never"}, "standby").collect()
    assert value(fams, "hw_smart_device_standby", device=ATA) == 1  # the default still applies


async def test_asleep_disk_keeps_last_values_and_their_read_time() -> None:
    smart = collector({}, "")
    before = time.time()
    awake = await smart.collect()
    read_at = value(awake, "hw_smart_device_last_read_timestamp_seconds", device=ATA)
    assert read_at is not None and before <= read_at <= time.time()
    assert smart.ctx.runner is not None
    smart.ctx.runner.env.update(FAKE_SMARTCTL_MODE="standby")  # type: ignore[union-attr]
    asleep = await smart.collect()
    assert value(asleep, "hw_smart_device_standby", device=ATA) == 1
    assert value(asleep, "hw_smart_device_last_read_timestamp_seconds", device=ATA) == read_at
    temperature = value(awake, "hw_smart_temperature_celsius", device=ATA)
    assert value(asleep, "hw_smart_temperature_celsius", device=ATA) == temperature
    other = value(asleep, "hw_smart_device_last_read_timestamp_seconds", device=OTHER)
    assert other is not None and other > read_at  # read again: it is awake


@pytest.mark.parametrize(
    "flag",
    [
        "--collector.smart.nocheck=always",
        "--collector.smart.nocheck-override=sdb",
        "--collector.smart.nocheck-override=sdb=awake",
        "--collector.smart.nocheck-override==never",
    ],
)
def test_bad_policies_are_usage_errors(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser(load_all()).parse_args([flag])
    assert exc.value.code == 2
    assert flag.split("=")[0] in capsys.readouterr().err
