"""Linux software RAID (md) arrays from /proc/mdstat, with sysfs details."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.base import (
    BlockingCollector,
    CollectorError,
    NotApplicable,
    SkipItem,
    read_number,
    read_text,
)
from collectors.registry import register

STATES = ("active", "inactive", "recovering", "resync", "check", "reshape")
# Kernel md array_state values (Documentation/admin-guide/md.rst).
ARRAY_STATES = (
    "clear",
    "inactive",
    "suspended",
    "readonly",
    "read-auto",
    "clean",
    "active",
    "write-pending",
    "active-idle",
    "broken",
)
DISK_STATES = ("active", "failed", "spare", "down")
# Levels without redundancy: mdstat prints no [n/m] status for them.
STRIPED = ("raid0", "linear")

DEVICE_LINE = re.compile(r"^(md\S*)\s*:\s*(\S.*)$")
MEMBER = re.compile(r"^\S+\[\d+\]((?:\([A-Z]\))*)$")
BLOCKS = re.compile(r"^(\d+) blocks\b")
STATUS = re.compile(r"\[(\d+)/(\d+)\]\s+\[([U_]+)\]")
SYNC = re.compile(r"\b(recovery|resync|check|reshape)\s*=\s*(?:[\d.]+%\s*\((\d+)/(\d+)\)|(\w+))")
SYNC_STATE = {"recovery": "recovering", "resync": "resync", "check": "check", "reshape": "reshape"}
# Block and sector counts are 64-bit in the kernel; anything larger is not a count.
MAX_COUNT = 2**64


@dataclass
class Array:
    """One md array as /proc/mdstat describes it."""

    device: str
    active: bool
    level: str = "unknown"
    members: int = 0
    failed: int = 0
    spare: int = 0
    blocks: int | None = None
    required: int | None = None
    in_sync: int | None = None
    down: int | None = None
    state: str = "active"
    sync_ratio: float | None = None
    lines: list[str] = field(default_factory=list)


def count(digits: str) -> int:
    """A block or disk count from mdstat; ValueError past what the kernel can count."""
    if len(digits) > 20 or int(digits) >= MAX_COUNT:
        raise ValueError(f"number out of range: {digits[:20]}...")
    return int(digits)


def parse_device_line(device: str, text: str) -> Array:
    """``active (auto-read-only) raid1 sda1[0] sdb1[1](F)`` -> state, level, member counts."""
    words = text.split()
    if words[0] not in ("active", "inactive"):
        raise ValueError(f"unexpected state {words[0][:40]!r}")
    array = Array(device, active=words[0] == "active")
    array.state = "active" if array.active else "inactive"
    for word in words[1:]:
        member = MEMBER.match(word)
        if member:
            array.members += 1
            array.failed += "(F)" in member.group(1)
            array.spare += "(S)" in member.group(1)
        elif word.startswith("("):
            continue  # (read-only), (auto-read-only)
        elif array.level == "unknown" and array.members == 0:
            array.level = word
        else:
            raise ValueError(f"unexpected word {word[:40]!r}")
    return array


def finish(array: Array) -> Array:
    """Apply the array's indented lines: size, [n/m] status and sync progress."""
    if array.lines:
        blocks = BLOCKS.match(array.lines[0])
        if blocks is None:
            raise ValueError(f"expected '<n> blocks', got {array.lines[0][:40]!r}")
        array.blocks = count(blocks.group(1))
    status = STATUS.search(array.lines[0]) if array.lines else None
    working = array.members - array.failed - array.spare
    if status:
        array.required, array.in_sync = count(status.group(1)), count(status.group(2))
        array.down = status.group(3).count("_")
    elif array.level in STRIPED:
        array.required, array.in_sync, array.down = working, working, 0
    if not array.active:
        array.in_sync = 0
        return array
    array.sync_ratio = 1.0
    for line in array.lines[1:]:
        sync = SYNC.search(line)
        if sync is None:
            continue
        array.state = SYNC_STATE[sync.group(1)]
        done, total = sync.group(2), sync.group(3)
        # resync=DELAYED / resync=PENDING: the pass has not started yet.
        array.sync_ratio = count(done) / count(total) if done and total and count(total) else 0.0
    return array


def parse_mdstat(text: str, skip: SkipItem) -> list[Array]:
    """Every readable array in /proc/mdstat; an odd one is skipped, all of them odd fails."""
    stanzas: list[tuple[str, str, list[str]]] = []
    lines: list[str] | None = None
    for line in text.splitlines():
        match = DEVICE_LINE.match(line)
        if match:
            lines = []
            stanzas.append((match.group(1), match.group(2), lines))
        elif not line.strip() or not line[0].isspace():
            lines = None  # blank line, "Personalities", "unused devices"
        elif lines is not None and not line.strip().startswith("bitmap:"):
            lines.append(line.strip())
    arrays: list[Array] = []
    first = ""
    for device, head, body in stanzas:
        try:
            if any(a.device == device for a in arrays):
                raise ValueError("listed twice (the first one is kept)")
            array = parse_device_line(device, head)
            array.lines = body
            arrays.append(finish(array))
        except ValueError as exc:
            first = first or f"{device}: {exc}"
            skip(device, str(exc))
    if first and not arrays:
        raise CollectorError(f"mdstat: {first}")
    return arrays


def one_hot(family: GaugeMetricFamily, device: str, current: str, states: Sequence[str]) -> None:
    """1 for the current state, 0 for every other state in the fixed set."""
    for state in states:
        family.add_metric([device, state], 1.0 if state == current else 0.0)


@register(
    "mdraid",
    description="Linux software RAID (md) arrays: state, disks, degraded, sync progress",
    interval="1m",
    timeout="30s",
)
class MdraidCollector(BlockingCollector):
    """Arrays from /proc/mdstat; /sys/block/md*/md adds degraded count and array_state."""

    def collect_blocking(self) -> Sequence[Metric]:
        """Parse mdstat, then read each array's sysfs md directory when present."""
        mdstat = self.ctx.procfs / "mdstat"
        if not mdstat.exists():
            raise NotApplicable(f"{mdstat} not found (md driver not loaded)")
        text = read_text(mdstat)
        if text is None:
            raise CollectorError(f"cannot read {mdstat}")
        if not text.startswith("Personalities"):
            raise CollectorError(f"{mdstat}: unexpected format (no 'Personalities' header)")
        arrays = parse_mdstat(text, self.skip)
        if not arrays:
            raise NotApplicable("no md arrays in mdstat")
        return self.families(arrays, self.ctx.sysfs / "block")

    def families(self, arrays: list[Array], block: Path) -> list[Metric]:
        """Metric families for the parsed arrays."""
        labels = ["device"]
        info = InfoMetricFamily("hw_mdraid", "md array RAID level.", labels=labels)
        state = GaugeMetricFamily(
            "hw_mdraid_state",
            "1 for the array's current activity state.",
            labels=[*labels, "state"],
        )
        array_state = GaugeMetricFamily(
            "hw_mdraid_array_state",
            "1 for the kernel's md/array_state value (sysfs).",
            labels=[*labels, "state"],
        )
        disks = GaugeMetricFamily(
            "hw_mdraid_disks", "Member disks by state.", labels=[*labels, "state"]
        )
        required = GaugeMetricFamily(
            "hw_mdraid_disks_required", "Disks the array needs to be complete.", labels=labels
        )
        degraded = GaugeMetricFamily(
            "hw_mdraid_degraded", "Number of missing (failed or absent) disks.", labels=labels
        )
        sync = GaugeMetricFamily(
            "hw_mdraid_sync_completed_ratio",
            "Progress of the running resync/recovery/check/reshape (1 when idle).",
            labels=labels,
        )
        blocks = GaugeMetricFamily("hw_mdraid_blocks", "Array size in 1 KiB blocks.", labels=labels)
        for array in arrays:
            dev = array.device
            info.add_metric([dev], {"level": array.level})
            one_hot(state, dev, array.state, STATES)
            counts = {"active": array.in_sync, "failed": array.failed, "spare": array.spare}
            counts["down"] = array.down
            for disk_state in DISK_STATES:
                value = counts[disk_state]
                if value is not None:
                    disks.add_metric([dev, disk_state], float(value))
            if array.required is not None:
                required.add_metric([dev], float(array.required))
            md_dir = block / dev / "md"
            # The kernel's own count wins; mdstat's [n/m] is the fallback.
            missing = read_number(md_dir / "degraded")
            if missing is None and array.down is not None:
                missing = float(array.down)
            if missing is not None:
                degraded.add_metric([dev], missing)
            kernel_state = read_text(md_dir / "array_state")
            if kernel_state is not None and kernel_state in ARRAY_STATES:
                one_hot(array_state, dev, kernel_state, ARRAY_STATES)
            if array.sync_ratio is not None:
                sync.add_metric([dev], array.sync_ratio)
            if array.blocks is not None:
                blocks.add_metric([dev], float(array.blocks))
        return [info, state, array_state, disks, required, degraded, sync, blocks]
