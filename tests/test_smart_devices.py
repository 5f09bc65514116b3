"""SMART device types (RAID controllers, USB bridges) and disk identity (WWN, serial, by-id)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric

from collectors.base import CollectorContext
from collectors.smart import SmartCollector
from collectors.smart_devices import DeviceList, identity, one_per_disk, parse_devices, wwn
from collectors.smart_parse import classify, device_label, parse_scan
from collectors.toolkit.runner import CommandRunner
from tests.exposition import value
from tests.support import REPO, SMARTCTL, fake_path

PATH = fake_path(str(Path(sys.executable).parent))
SCAN = REPO / "tests" / "fixtures" / "smartctl-scan"
# Real smartctl 7.1/7.4 captures of SATA SSDs behind a MegaRAID controller (smartctl_exporter).
ATA0 = "sat+megaraid_0-null-MZ7KH480HAHQ0D3-0"
ATA1 = "sat+megaraid_1-null-HFS1T9G3H2X069N-0"
PLAIN = "HGST_HUS724020ALE640_28"


def load(stem: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SMARTCTL / f"{stem}.json").read_text())
    return doc


async def collect(
    options: dict[str, str], env: dict[str, str], rootfs: Path = Path("/nonexistent")
) -> Sequence[Metric]:
    runner = CommandRunner(env={**os.environ, "PATH": PATH, **env})
    ctx = CollectorContext(rootfs=rootfs, runner=runner, options=options, timeout=30.0)
    return await SmartCollector(ctx).collect()


def labels_of(fams: Sequence[Metric], name: str) -> list[dict[str, str]]:
    return [dict(s.labels) for f in fams for s in f.samples if s.name == name]


def test_labels_follow_smartctl_exporter() -> None:
    assert device_label("/dev/bus/0", "megaraid,3") == "bus_0_megaraid_3"
    assert device_label("/dev/sdb", "cciss,1") == "sdb_cciss_1"
    assert device_label("/dev/sdc", "sntjmicron") == "sdc"
    assert device_label("/dev/disk/by-id/ata-X_1", "sat") == "ata-X_1"


def test_typed_device_list() -> None:
    text = "sda,/dev/sdb;cciss,1,/dev/bus/0;megaraid,3,/dev/sdc;sntjmicron,/dev/sdd;sat,12"
    assert parse_devices(text) == [
        ("/dev/sda", ""),
        ("/dev/sdb", "cciss,1"),
        ("/dev/bus/0", "megaraid,3"),
        ("/dev/sdc", "sntjmicron"),
        ("/dev/sdd", "sat,12"),
    ]


@pytest.mark.parametrize("text", ["/dev/sda;", ";sat", "/dev/sda;SAT!", "/dev/sda;-d sat"])
def test_bad_device_lists_are_usage_errors(text: str) -> None:
    with pytest.raises(ValueError):
        DeviceList().canonical(text)


def test_override_needs_a_type() -> None:
    assert DeviceList(require_type=True).canonical("/dev/sdc;sat") == "/dev/sdc;sat"
    with pytest.raises(ValueError, match="has no type"):
        DeviceList(require_type=True).canonical("/dev/sdc")


def test_real_megaraid_scan_gives_one_device_per_slot() -> None:
    devices = parse_scan((SCAN / "megaraid-scrutiny.json").read_bytes())
    assert [(d.name, d.type, d.label) for d in devices] == [
        ("/dev/bus/0", "megaraid,0", "bus_0_megaraid_0"),
        ("/dev/bus/0", "megaraid,1", "bus_0_megaraid_1"),
    ]


async def test_scanned_controller_disks_are_read_with_their_type() -> None:
    fams = await collect({}, {"FAKE_SMARTCTL_DEVICES": f"{PLAIN},{ATA0},{ATA1}"})
    for label, stem in (("bus_0_megaraid_0", ATA0), ("bus_0_megaraid_1", ATA1), ("sda", PLAIN)):
        doc = load(stem)
        temperature = doc["temperature"]["current"]
        assert value(fams, "hw_smart_temperature_celsius", device=label) == temperature
        (info,) = [i for i in labels_of(fams, "hw_smart_device_info") if i["device"] == label]
        assert (info["model"], info["wwn"]) == (doc["model_name"], wwn(doc))
    assert value(fams, "hw_smart_device_info", device="bus_0_megaraid_0") == 1


async def test_typed_devices_option_and_missing_type() -> None:
    env = {"FAKE_SMARTCTL_DEVICES": f"{ATA0},{ATA1}"}
    fams = await collect({"devices": "/dev/bus/0;megaraid,1,/dev/bus/0;sat+megaraid,0"}, env)
    assert value(fams, "hw_smart_device_readable", device="bus_0_megaraid_1") == 1
    assert value(fams, "hw_smart_device_readable", device="bus_0_sat+megaraid_0") == 1
    fams = await collect({"devices": f"/dev/bus/0,/dev/{PLAIN}"}, env)
    assert value(fams, "hw_smart_device_readable", device="bus_0") == 0


async def test_unknown_usb_bridge_needs_the_override() -> None:
    """The bridge behaviour is hand-written in the fake (no public JSON capture found)."""
    env = {"FAKE_SMARTCTL_DEVICES": f"{PLAIN},{ATA0}", "FAKE_SMARTCTL_USB_BRIDGE": "/dev/sda"}
    fams = await collect({}, env)
    assert value(fams, "hw_smart_device_readable", device="sda") == 0
    fams = await collect({"device-type-override": "/dev/sda;sat"}, env)
    assert value(fams, "hw_smart_device_readable", device="sda") == 1
    assert value(fams, "hw_smart_status_passed", device="sda") == 1


async def test_a_disk_reached_by_two_paths_is_exported_once() -> None:
    devices = f"/dev/{ATA0},/dev/bus/0;megaraid,0,/dev/{ATA1}"
    env = {"FAKE_SMARTCTL_DEVICES": f"{ATA0},{ATA1}"}
    fams = await collect({"devices": devices}, env)
    assert value(fams, "hw_smart_device_paths", device=ATA0) == 2
    assert value(fams, "hw_smart_device_paths", device=ATA1) == 1
    assert value(fams, "hw_smart_device_readable", device="bus_0_megaraid_0") is None
    fams = await collect({"devices": devices, "dedupe": "false"}, env)
    assert value(fams, "hw_smart_device_readable", device="bus_0_megaraid_0") == 1


def test_identity_is_wwn_else_serial() -> None:
    ata, sas = load(ATA0), load("HITACHI_H109060SESUN600G_9")
    assert wwn(ata) == "0x50025380499602d2"  # naa 5, oui 0x002538, id 1234567890
    assert wwn(sas) == "0x1234567890abcdef"  # SCSI logical_unit_id
    assert identity(ata) == (ata["model_name"], "0x50025380499602d2")
    del ata["wwn"]
    assert identity(ata) == (ata["model_name"], ata["serial_number"])
    del ata["serial_number"]
    assert identity(ata) is None
    one = classify("sda", 0, json.dumps(ata).encode(), b"")
    two = classify("sdb", 0, json.dumps(ata).encode(), b"")
    kept, paths = one_per_disk([one, two])
    assert [r.device for r in kept] == ["sda", "sdb"]  # nothing to match on: both kept
    assert paths == {"sda": 1, "sdb": 1}


async def test_by_id_name_on_the_info_metric(tmp_path: Path) -> None:
    by_id = tmp_path / "dev" / "disk" / "by-id"
    by_id.mkdir(parents=True)
    (by_id / "wwn-0x5000cca22de00c9b").symlink_to("../../sda")
    (by_id / "ata-HGST_HUS724020ALE640_PK1234").symlink_to("../../sda")
    (by_id / "ata-HGST_HUS724020ALE640_PK1234-part1").symlink_to("../../sda1")
    fams = await collect({}, {"FAKE_SMARTCTL_DEVICES": f"{PLAIN},{ATA0}"}, tmp_path)
    info = {i["device"]: i for i in labels_of(fams, "hw_smart_device_info")}
    assert info["sda"]["by_id"] == "ata-HGST_HUS724020ALE640_PK1234"
    assert info["bus_0_megaraid_0"]["by_id"] == ""
