"""``nvme list -o json`` layouts of nvme-cli 1.x, 2.0-2.10 and 2.11+ on real captures."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from collectors.base import CollectorContext, CollectorError
from collectors.nvme import NvmeCollector
from collectors.nvme_list import parse_list
from collectors.toolkit.runner import CommandRunner
from tests.exposition import value
from tests.support import REPO, fake_path

LAYOUTS = REPO / "tests" / "fixtures" / "nvme" / "list"
PATH = fake_path(str(Path(sys.executable).parent))

# capture -> the controllers nvme-cli listed and the identity of the first one
EXPECTED = {
    "v1-ceph-nvme-loop.json": (
        ["nvme0", "nvme1"],
        {"model": "INTEL SSDPEDMD400G4", "serial": "PHFT620400WB400BGN", "firmware": "8DV101H0"},
    ),
    "v1.16-issue1786.json": (
        ["nvme0"],
        {"model": "WUS6AA138FSP5EA", "serial": "22482U900075", "firmware": "LF100010"},
    ),
    "v2.10-issue226.json": (
        ["nvme0"],
        {"model": "Samsung SSD 980 500GB", "serial": "S64D...", "firmware": "3B4QFXO7"},
    ),
    "v2.11-ceph-nvme-loop.json": (
        ["nvme0"],
        {"model": "INTEL SSDPEDMD400G4", "serial": "CVFT623300LN400BGN", "firmware": "8DV101H0"},
    ),
}


def test_every_capture_is_covered() -> None:
    assert sorted(p.name for p in LAYOUTS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_captures_give_controllers_and_identity(name: str) -> None:
    controllers, first = EXPECTED[name]
    found = parse_list((LAYOUTS / name).read_bytes())
    assert sorted(found) == controllers
    assert found[controllers[0]] == first


def test_v1_verbose_subsystems_without_host_wrapper() -> None:
    """Hand-written after nvme-cli issue #225 (1.13 ``-v``): subsystems directly in Devices."""
    doc = {
        "Devices": [
            {
                "Subsystem": "nvme-subsys1",
                "Controllers": [{"Controller": "nvme1", "ModelNumber": "M", "SerialNumber": "S"}],
                "Namespaces": [{"NameSpace": "nvme1n1", "NSID": 1}],
            }
        ]
    }
    found = parse_list(json.dumps(doc).encode())
    assert found == {"nvme1": {"model": "M", "serial": "S", "firmware": ""}}


def test_subsystem_without_controllers_uses_namespace_names() -> None:
    capture = json.loads((LAYOUTS / "v2.11-ceph-nvme-loop.json").read_text())
    subsys = capture["Devices"][0]["Subsystems"][0]
    subsys["Namespaces"] = subsys.pop("Controllers")[0]["Namespaces"]
    assert sorted(parse_list(json.dumps(capture).encode())) == ["nvme0"]


@pytest.mark.parametrize(
    "entry",
    [
        {"DevicePath": "/dev/sda"},
        {"Subsystems": [{"Controllers": [{"Controller": "fabric-x"}]}]},
        {"Subsystems": [{"Subsystem": "nvme-subsys0"}]},
        {"Name": "nvme0"},
        "nvme0",
    ],
)
def test_listed_but_unparseable_controllers_are_errors(entry: object) -> None:
    with pytest.raises(ValueError):
        parse_list(json.dumps({"Devices": [entry]}).encode())


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_collector_reads_every_layout(name: str, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": PATH, "FAKE_NVME_LIST": str(LAYOUTS / name)}
    ctx = CollectorContext(sysfs=tmp_path, runner=CommandRunner(env=env), timeout=20.0)
    fams = await NvmeCollector(ctx).collect()
    controllers, first = EXPECTED[name]
    assert value(fams, "hw_nvme_info", device=controllers[0], **first) == 1
    # nvme0 has a smart-log fixture: the controller found in the list was read.
    assert value(fams, "hw_nvme_smart_log_readable", device="nvme0") == 1


async def test_collector_fails_when_listed_controllers_cannot_be_parsed(tmp_path: Path) -> None:
    bad = tmp_path / "list.json"
    bad.write_text(json.dumps({"Devices": [{"Subsystems": [{"Controllers": [{"Cntlid": "1"}]}]}]}))
    env = {**os.environ, "PATH": PATH, "FAKE_NVME_LIST": str(bad)}
    ctx = CollectorContext(sysfs=tmp_path, runner=CommandRunner(env=env), timeout=20.0)
    with pytest.raises(CollectorError, match="cannot tell the controller"):
        await NvmeCollector(ctx).collect()
