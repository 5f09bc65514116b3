"""smartctl JSON to per-device results (families: collectors/smart_families.py)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from collectors.toolkit.tools import Tool, says_denied

# smartctl(8) EXIT STATUS: bit 0 command line did not parse, bit 1 device open failed.
UNREADABLE_BITS = 0x03
OPEN_FAILED_BIT = 0x02

SMARTCTL = Tool(
    "smartctl",
    privilege="smartctl needs root, or CAP_SYS_RAWIO (ATA/SCSI) and CAP_SYS_ADMIN (NVMe) "
    "plus read access to the device node (usually the disk group)",
    answers="the disk",
)
_STANDBY = re.compile(r"device is in (.+?) mode", re.IGNORECASE)
_DEV_PREFIX = re.compile(r"^/dev/(?:disk/by-id/|disk/by-path/|)")
# Any of these means smartctl actually got data from the device.
_DATA_KEYS = (
    "smart_status",
    "ata_smart_attributes",
    "nvme_smart_health_information_log",
    "scsi_error_counter_log",
    "temperature",
    "power_on_time",
    "model_name",
    "scsi_model_name",
)


@dataclass(frozen=True)
class Device:
    """One disk to query: smartctl device name, optional ``--device`` type, metric label."""

    name: str
    type: str
    label: str


@dataclass(frozen=True)
class DeviceResult:
    """The outcome of one per-device smartctl run."""

    device: str
    readable: bool
    standby: bool = False
    exit_status: int | None = None
    doc: dict[str, Any] | None = None
    error: str | None = None


def device_label(name: str, dev_type: str = "") -> str:
    """smartctl_exporter's device label: ``/dev/bus/0`` + ``megaraid,3`` -> ``bus_0_megaraid_3``."""
    label = _DEV_PREFIX.sub("", name).replace("/", "_")
    if "," in dev_type:  # many disks behind one device node: the slot makes them distinct
        label = f"{label}_{dev_type.replace(',', '_')}"
    return label


def parse_scan(stdout: bytes) -> list[Device]:
    """Devices from ``smartctl --scan-open --json``; raises ValueError on unusable output."""
    doc = _load(stdout)
    if doc is None or "smartctl" not in doc:
        raise ValueError(f"output is not smartctl JSON: {_excerpt(stdout)}")
    devices, seen = [], set()
    for entry in doc.get("devices") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        dev_type = entry["type"] if isinstance(entry.get("type"), str) else ""
        label = device_label(entry["name"], dev_type)
        if label not in seen:
            seen.add(label)
            devices.append(Device(entry["name"], dev_type, label))
    return devices


def classify(label: str, returncode: int, stdout: bytes, stderr: bytes) -> DeviceResult:
    """Decide what one smartctl run means: data, standby, or a device that could not be read."""
    doc = _load(stdout)
    if doc is None or not isinstance(doc.get("smartctl"), dict):
        if returncode & UNREADABLE_BITS:
            reason = _reason(None, stderr or stdout, returncode)
        elif stdout.lstrip().startswith(b"{"):
            reason = f"smartctl printed truncated or invalid JSON: {_excerpt(stdout)}"
        else:
            reason = f"smartctl printed output that is not JSON: {_excerpt(stdout or stderr)}"
        return DeviceResult(label, False, exit_status=returncode, error=reason)
    status = _exit_status(doc["smartctl"].get("exit_status"), returncode)
    messages = _messages(doc)
    if status & OPEN_FAILED_BIT and (
        "power_mode" in doc or any(_STANDBY.search(m) for m in messages)
    ):
        return DeviceResult(label, True, standby=True, exit_status=status)
    if status & UNREADABLE_BITS and not any(key in doc for key in _DATA_KEYS):
        return DeviceResult(label, False, exit_status=status, error=_reason(doc, stderr, status))
    return DeviceResult(label, True, exit_status=status, doc=doc)


def _reason(doc: dict[str, Any] | None, stderr: bytes, status: int) -> str:
    text = "; ".join(_messages(doc)) if doc else ""
    text = text or stderr.decode(errors="replace").strip() or f"smartctl exited {status}"
    if says_denied(text):
        return f"permission denied; {SMARTCTL.privilege}"
    return text


def _load(stdout: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(stdout)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def _messages(doc: dict[str, Any]) -> list[str]:
    found = section(doc, "smartctl").get("messages")
    if not isinstance(found, list):
        return []
    return [m["string"] for m in found if isinstance(m, dict) and isinstance(m.get("string"), str)]


def section(doc: Any, key: str) -> dict[str, Any]:
    """The object at ``doc[key]``; empty when absent or not an object."""
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, dict) else {}


def _excerpt(data: bytes) -> str:
    text = data.decode(errors="replace").strip().replace("\n", " ")
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


def _exit_status(value: Any, default: int) -> int:
    """smartctl's exit status byte from its JSON; the process's own when absent or odd."""
    valid = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255
    return value if valid else default


class Unreadable(ValueError):
    """A number in smartctl's JSON that no finite float can hold."""


def finite(value: float) -> float:
    """``value`` as a finite float; Unreadable when it is beyond float range."""
    try:
        result = float(value)
    except OverflowError:
        bits = int(value).bit_length()
        raise Unreadable(f"an integer of {bits} bits does not fit a float") from None
    if not math.isfinite(result):
        raise Unreadable(f"{result} is not a finite number")
    return result


def number(doc: Any, *path: str) -> float | None:
    """A numeric field at ``path`` (numbers or numeric strings); ``None`` when absent.

    Raises Unreadable for a number no float can hold (a huge integer literal, ``1e999``).
    """
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    if isinstance(doc, str):
        try:
            doc = float(doc)
        except ValueError:
            return None
    return finite(doc) if isinstance(doc, int | float) else None


def text(doc: dict[str, Any], *keys: str) -> str:
    """The first non-empty string among ``keys``."""
    for key in keys:
        value = doc.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""
