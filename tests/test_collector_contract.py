"""The behaviour every registered collector owes the framework, checked on each of them.

Not applicable on an empty machine; ``hw_`` names in base units, ``_total`` only on
counters, one family per name, no sample timestamps; its own timeout kept, with no tool
process left behind.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from collectors.base import CollectorContext, CollectorError, NotApplicable
from collectors.registry import CollectorSpec, load_all
from collectors.toolkit.durations import parse_duration
from collectors.toolkit.runner import CommandRunner
from tests.doubles import fake_psutil, sbattery, sfan, shwtemp
from tests.processes import no_orphans_after, script
from tests.support import PROCFS, REPO, SYSFS, fake_path

REGISTRY = load_all()
NAMES = sorted(REGISTRY)
ROOTFS = REPO / "tests" / "fixtures" / "rootfs"
# The fakes run under this interpreter: much faster to start than a pyenv shim.
FAKE_PATH = fake_path(str(Path(sys.executable).parent))
# Collectors that are never "not applicable" on an empty root, and why. psutil reads the
# running kernel (system calls, and procfs through its process-global PROCFS_PATH), not
# the injected roots; the synthetic collector makes its own data.
ALWAYS_APPLICABLE = {
    "cpu": "falls back to psutil's CPU counts",
    "filesystems": "psutil's mount table, statvfs of the real mounts",
    "memory": "psutil's meminfo",
    "network": "psutil's interface stats (system calls)",
    "system": "psutil's boot time and the running kernel's uname",
    "synthetic": "makes its own samples",
}
# A sensor reading for the one collector whose source is psutil's hardware readings alone.
SENSORS = fake_psutil(
    sensors_temperatures=lambda: {"coretemp": [shwtemp("Core 0", 45.0, 80.0, 100.0)]},
    sensors_fans=lambda: {"thinkpad": [sfan("", 2100)]},
    sensors_battery=lambda: sbattery(83, 3600, True),
)
# Base units (the Prometheus naming guide); any of these words in a name is a smaller or
# larger unit that should have been converted.
NOT_BASE_UNITS = re.compile(
    r"_(milli|micro|nano|kilo|mega|giga)\w*|_(minutes|hours|days|weeks|kelvin|fahrenheit|"
    r"kib|mib|gib|kb|mb|gb|tb|mhz|khz|ghz|percent)(_|$)"
)
TIMEOUT = 2.0
GRACE = 1.0  # after the collector's timeout: time to kill the tool and build the message


def context(spec: CollectorSpec, **sources: object) -> CollectorContext:
    """A context with the collector's option defaults (as the flags give them) and timeout."""
    defaults = {option.name: option.default for option in spec.options}
    timeout = parse_duration(spec.timeout)
    return CollectorContext(options=defaults, timeout=timeout, **sources)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fixture_families() -> dict[str, Sequence[Metric]]:
    """Each collector's families on the fixture machine (fixture roots, fake tools).

    The psutil-based collectors read this machine through psutil, as in their own tests.
    """
    runner = CommandRunner(env={**os.environ, "PATH": FAKE_PATH})
    found: dict[str, Sequence[Metric]] = {}
    for name in NAMES:
        spec = REGISTRY[name]
        extra = {"psutil": SENSORS} if name == "sensors" else {}
        ctx = context(spec, procfs=PROCFS, sysfs=SYSFS, rootfs=ROOTFS, runner=runner, **extra)
        found[name] = asyncio.run(spec.factory(ctx).collect())
    return found


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ALWAYS_APPLICABLE])
async def test_not_applicable_on_an_empty_machine(name: str, tmp_path: Path) -> None:
    """Empty sysfs, procfs and rootfs, and a PATH with no tools: nothing to collect here."""
    roots = {root: tmp_path / root for root in ("procfs", "sysfs", "rootfs", "bin")}
    for path in roots.values():
        path.mkdir()
    runner = CommandRunner(env={"PATH": str(roots["bin"])})
    sources = {key: path for key, path in roots.items() if key != "bin"}
    extra = {"psutil": fake_psutil(sensors_temperatures=dict, sensors_fans=dict,
                                   sensors_battery=lambda: None)} if name == "sensors" else {}  # fmt: skip
    collector = REGISTRY[name].factory(context(REGISTRY[name], runner=runner, **sources, **extra))
    with pytest.raises(NotApplicable):
        await collector.collect()


def test_the_exemptions_are_registered_collectors() -> None:
    assert set(ALWAYS_APPLICABLE) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_names_types_and_samples(name: str, fixture_families: dict[str, Sequence[Metric]]) -> None:
    families = fixture_families[name]
    assert [f for f in families if f.samples], f"{name} exported nothing on the fixture machine"
    names = [family.name for family in families]
    assert len(names) == len(set(names)), f"two families of one name in {names}"
    owner: dict[str, str] = {}  # sample name -> its family: no name in two families
    for family in families:
        assert family.name.startswith("hw_"), family.name
        assert not NOT_BASE_UNITS.search(family.name), f"{family.name}: not in base units"
        if "percent" in family.name:
            assert family.name.endswith("_ratio"), family.name
        for sample in family.samples:
            assert sample.timestamp is None, f"{sample.name} carries a timestamp"
            if family.type != "counter":
                assert not sample.name.endswith("_total"), f"{sample.name} is a {family.type}"
            assert owner.setdefault(sample.name, family.name) == family.name, sample.name


TOOLS = sorted(n for n in NAMES if REGISTRY[n].tool)


def test_every_tool_collector_is_checked_for_its_timeout() -> None:
    assert TOOLS == ["gpu", "ipmi", "nvme", "smart"]


@pytest.mark.parametrize("name", TOOLS)
async def test_a_hanging_tool_is_cut_at_the_timeout(name: str, tmp_path: Path) -> None:
    """The tool hangs (and starts a child that hangs): the collector fails in time, no orphans."""
    spec = REGISTRY[name]
    assert spec.tool is not None
    marker = f"contract-hang-{uuid.uuid4()}"
    script(
        tmp_path,
        spec.tool,
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', '{marker}'])\n"
        "time.sleep(300)",
    )
    runner = CommandRunner(env={**os.environ, "PATH": str(tmp_path)})
    ctx = context(spec, procfs=PROCFS, sysfs=SYSFS, rootfs=ROOTFS, runner=runner)
    collector = spec.factory(replace(ctx, timeout=TIMEOUT))
    started = time.monotonic()
    task = asyncio.create_task(collector.collect())
    ended: list[float] = []
    task.add_done_callback(lambda _: ended.append(time.monotonic()))
    async with no_orphans_after(marker):
        with pytest.raises(CollectorError, match="timed out"):
            await task
    assert ended[0] - started < TIMEOUT + GRACE
