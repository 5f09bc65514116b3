"""Which disks smartctl reads: typed device lists, type overrides, by-id names, one series per disk."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from collectors.smart_parse import Device, DeviceResult, device_label, section, text
from collectors.toolkit.options import OptionKind

# smartctl -d types: sat, sat,12, megaraid,3, sat+megaraid,3, cciss,1, areca,2/1, hpt,1/1/3,
# aacraid,0,0,1, usbjmicron,x,1, sntjmicron, sntrealtek, ...
TYPE = re.compile(r"[a-z][a-z0-9+_-]*(?:,[a-z0-9/]+)*")
# Pieces of a comma-separated list that continue a type rather than start a new device.
_CONTINUATION = re.compile(r"[0-9/]+|auto|p|x")
_PREFERRED_LAST = ("wwn-", "nvme-eui.", "nvme-nvme.")


def split_entries(value: str) -> list[str]:
    """Comma-separated entries, keeping the commas inside a type (``/dev/bus/0;megaraid,3``)."""
    entries: list[str] = []
    for piece in (p.strip() for p in value.split(",")):
        if not piece:
            continue
        if entries and ";" in entries[-1] and _CONTINUATION.fullmatch(piece):
            entries[-1] += "," + piece
        else:
            entries.append(piece)
    return entries


def parse_devices(value: str, require_type: bool = False) -> list[tuple[str, str]]:
    """``[(device, type)]`` from ``sda,/dev/sdb;sat,/dev/bus/0;megaraid,3``; ValueError if bad."""
    found = []
    for entry in split_entries(value):
        name, sep, dev_type = (part.strip() for part in entry.partition(";"))
        if not name:
            raise ValueError(f"no device name in {entry!r}")
        if sep and not TYPE.fullmatch(dev_type):
            raise ValueError(
                f"invalid smartctl device type {dev_type!r} in {entry!r} "
                "(e.g. sat, megaraid,3, cciss,1, sntjmicron)"
            )
        if require_type and not sep:
            raise ValueError(f"{entry!r} has no type: write device;type, e.g. /dev/sdc;sat")
        found.append((name if name.startswith("/") else f"/dev/{name}", dev_type))
    return found


@dataclass(frozen=True)
class DeviceList(OptionKind):
    """Comma-separated devices, each optionally ``;type`` (smartctl ``-d``)."""

    require_type: bool = False
    name: ClassVar[str] = "DEVICES"

    def canonical(self, text: str) -> str:
        """The list unchanged, once every entry parses."""
        parse_devices(text, self.require_type)
        return text


def configured(value: str) -> list[Device]:
    """Devices named in the ``devices`` option, once each."""
    found: dict[str, Device] = {}
    for name, dev_type in parse_devices(value):
        device = Device(name, dev_type, device_label(name, dev_type))
        found.setdefault(device.label, device)
    return list(found.values())


def override(devices: Sequence[Device], value: str) -> list[Device]:
    """Devices with the type forced by ``device-type-override`` (unknown USB bridges)."""
    forced = dict(parse_devices(value, require_type=True))
    return [
        Device(d.name, forced[d.name], device_label(d.name, forced[d.name]))
        if d.name in forced
        else d
        for d in devices
    ]


def by_id_names(rootfs: Path) -> dict[str, str]:
    """Device node (``/dev/sda``) -> its most descriptive ``/dev/disk/by-id`` name."""
    base = rootfs / "dev" / "disk" / "by-id"
    try:
        links = sorted(base.iterdir())
        root = rootfs.resolve()
    except OSError:
        return {}
    found: dict[str, str] = {}
    for link in links:
        if "-part" in link.name:
            continue
        try:
            node = "/" + str(link.resolve().relative_to(root))
        except (OSError, ValueError):
            continue
        current = found.get(node)
        if current is None or _rank(link.name) < _rank(current):
            found[node] = link.name
    return found


def _rank(name: str) -> tuple[bool, str]:
    return name.startswith(_PREFERRED_LAST), name


def wwn(doc: dict[str, Any]) -> str:
    """World Wide Name as in ``/dev/disk/by-id/wwn-0x...``: ATA ``wwn`` or SCSI logical unit id."""
    parts = [section(doc, "wwn").get(k) for k in ("naa", "oui", "id")]
    if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in parts):
        naa, oui, ident = parts
        return f"0x{naa:x}{oui:06x}{ident:09x}"
    return text(doc, "logical_unit_id").lower()


def identity(doc: dict[str, Any] | None) -> tuple[str, str] | None:
    """What makes a disk itself: model plus WWN, else model plus serial; None if unknown."""
    if doc is None:
        return None
    model = text(doc, "model_name", "scsi_model_name")
    key = wwn(doc) or text(doc, "serial_number")
    return (model, key) if key else None


def one_per_disk(results: Sequence[DeviceResult]) -> tuple[list[DeviceResult], dict[str, int]]:
    """One result per physical disk (the first path wins) and how many paths reached each."""
    kept: list[DeviceResult] = []
    first: dict[tuple[str, str], str] = {}
    paths: dict[str, int] = {}
    for result in results:
        key = identity(result.doc)
        if key is not None and key in first:
            paths[first[key]] += 1
            continue
        if key is not None:
            first[key] = result.device
        paths[result.device] = 1
        kept.append(result)
    return kept, paths
