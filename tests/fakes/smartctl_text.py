"""smartctl's text output, replayed from real ``smartctl --all`` captures (for smartmon.py).

Captures: $FAKE_SMARTCTL_TEXT_FIXTURES, else tests/fixtures/smartctl-text, one file per disk
named <device>.<type>.txt (sg2.sat.txt is /dev/sg2 with -d sat). smartctl prints, for each
option, the same section it prints within --all; this module cuts that section out:
  -V                        the capture's first line (smartctl's version line)
  --scan-open               one "<dev> -d <type> # <dev>, <type> device" line per capture
  --nocheck standby         the three header lines (the disk is active), exit 0
  --info / -i               header + INFORMATION SECTION
  --health / -H             header + READ SMART DATA SECTION's first (health) line
  --attributes / -A         header + READ SMART DATA SECTION + the attribute block
  -l xerror,1               header + the error log block
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DATA = "=== START OF READ SMART DATA SECTION ==="
INFO = "=== START OF INFORMATION SECTION ==="


def fixtures_dir() -> Path:
    env = os.environ.get("FAKE_SMARTCTL_TEXT_FIXTURES")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "fixtures" / "smartctl-text"


def captures() -> dict[str, tuple[str, list[str]]]:
    """Device path -> (device type, capture lines)."""
    table = {}
    for path in sorted(fixtures_dir().glob("*.txt")):
        device, kind = path.name.removesuffix(".txt").split(".", 1)
        table[f"/dev/{device}"] = (kind, path.read_text().splitlines())
    return table


def block(lines: list[str], first: str) -> list[str]:
    """The lines from the one starting with ``first`` up to (without) the next blank line."""
    for index, line in enumerate(lines):
        if line.startswith(first):
            end = next((i for i in range(index, len(lines)) if not lines[i].strip()), len(lines))
            return lines[index:end]
    return []


def section(argv: list[str], lines: list[str]) -> list[str]:
    header = lines[:3]
    data_start = lines.index(DATA) if DATA in lines else len(lines)
    if "--info" in argv or "-i" in argv:
        return header + block(lines, INFO)
    if "--health" in argv or "-H" in argv:
        return [*header, DATA, *lines[data_start + 1 : data_start + 2], ""]
    if "--attributes" in argv or "-A" in argv:
        attributes = block(lines, "SMART Attributes Data Structure") or block(
            lines, "Current Drive Temperature"
        )
        return [*header, DATA, *attributes, ""]
    if "-l" in argv:
        return [*header, *block(lines, "SMART Error Log"), ""]
    return header  # --nocheck standby alone: the disk is active, nothing else to say


def main(argv: list[str]) -> None:
    table = captures()
    if "-V" in argv or "--version" in argv:
        first = next(iter(table.values()))[1]
        print("\n".join(first[:2]))
        sys.exit(0)
    if "--scan-open" in argv or "--scan" in argv:
        for device, (kind, _) in table.items():
            print(f"{device} -d {kind} # {device}, {kind.upper()} device")
        sys.exit(0)
    devices = [a for a in argv if a.startswith("/dev/")]
    if not devices or devices[-1] not in table:
        name = devices[-1] if devices else "(none)"
        print(f"Smartctl open device: {name} failed: No such device", file=sys.stderr)
        sys.exit(2)
    print("\n".join(section(argv, table[devices[-1]][1])))
    sys.exit(0)
