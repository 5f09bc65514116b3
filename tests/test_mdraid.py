"""mdraid collector: fixture /proc/mdstat + sysfs md dirs, garbage, absent file, exposition."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collectors.base import CollectorContext, CollectorError, NotApplicable
from collectors.mdraid import MdraidCollector
from collectors.registry import load_all
from tests.exposition import Samples, exposition, key, samples, scrape
from tests.support import PROCFS, SYSFS, run_exporter
from tests.unreadable import assert_unreadable

MDSTAT = (PROCFS / "mdstat").read_text()
STATES = ("active", "inactive", "recovering", "resync", "check", "reshape")
# (device, expected state, text its mdstat stanza must contain): one array per state.
CASES = [
    ("md3", "active", " active raid6 "),
    ("md4", "inactive", " inactive raid1 "),
    ("md219", "inactive", " inactive sdb"),
    ("md6", "recovering", "recovery ="),
    ("md8", "resync", "resync ="),
    ("md9", "resync", "resync=DELAYED"),
    ("md11", "resync", "resync=PENDING"),
    ("md201", "check", "check ="),
    ("md7", "active", "[U_UU]"),
    ("md10", "active", " raid0 "),
    ("md120", "active", " linear "),
]


def render(procfs: Path = PROCFS, sysfs: Path = SYSFS) -> str:
    collector = MdraidCollector(CollectorContext(procfs=procfs, sysfs=sysfs))
    return exposition(collector.collect_blocking()).decode()


def stanzas() -> dict[str, list[str]]:
    """Device -> its device line and indented lines, straight from the fixture text."""
    found: dict[str, list[str]] = {}
    for block in MDSTAT.split("\n\n"):
        lines = block.strip("\n").splitlines()
        if lines and lines[0].startswith("md"):
            found[lines[0].split()[0]] = lines
    return found


def value(got: Samples, name: str, device: str, **labels: str) -> float | None:
    return got.get(key(name, device=device, **labels))


def test_every_array_is_exported_with_its_level() -> None:
    got = samples(render())
    info = {
        dict(labels)["device"]: dict(labels)["level"] for n, labels in got if n == "hw_mdraid_info"
    }
    assert set(info) == set(stanzas())
    for device, lines in stanzas().items():
        level = re.search(r"\b(raid\d+|linear)\b", lines[0])
        assert info[device] == (level.group(1) if level else "unknown"), device


@pytest.mark.parametrize(("device", "state", "marker"), CASES)
def test_state_per_array(device: str, state: str, marker: str) -> None:
    assert marker in "\n".join(stanzas()[device])
    got = samples(render())
    assert {s: value(got, "hw_mdraid_state", device, state=s) for s in STATES} == {
        s: float(s == state) for s in STATES
    }


def test_disk_counts_match_fixture() -> None:
    got = samples(render())
    for device, lines in stanzas().items():
        head = lines[0]
        assert value(got, "hw_mdraid_disks", device, state="failed") == head.count("(F)")
        assert value(got, "hw_mdraid_disks", device, state="spare") == head.count("(S)")
        status = re.search(r"\[(\d+)/(\d+)\] \[([U_]+)\]", lines[1])
        members = len(re.findall(r"\S+\[\d+\]", head))
        active = value(got, "hw_mdraid_disks", device, state="active")
        if " inactive " in head:
            assert active == 0, device
        elif status:
            assert active == int(status.group(2)), device
        else:  # raid0 / linear: every member is needed and active
            assert active == members - head.count("(F)") - head.count("(S)"), device
        if status:
            assert value(got, "hw_mdraid_disks_required", device) == int(status.group(1))
            assert value(got, "hw_mdraid_disks", device, state="down") == status.group(3).count("_")


def test_degraded_prefers_sysfs_then_mdstat() -> None:
    got = samples(render())
    checked_sysfs = 0
    for device, lines in stanzas().items():
        sysfs_file = SYSFS / "block" / device / "md" / "degraded"
        status = re.search(r"\[(\d+)/(\d+)\]", lines[1])
        if sysfs_file.exists():
            expected = float(sysfs_file.read_text())
            checked_sysfs += 1
        elif status:
            expected = float(int(status.group(1)) - int(status.group(2)))
        elif " inactive " in lines[0]:
            assert value(got, "hw_mdraid_degraded", device) is None
            continue
        else:
            expected = 0.0  # raid0 / linear have no redundancy to lose
        assert value(got, "hw_mdraid_degraded", device) == expected, device
    assert checked_sysfs
    assert value(got, "hw_mdraid_degraded", "md7") == 1  # [4/3] [U_UU]


def test_sync_ratio_and_blocks() -> None:
    got = samples(render())
    for device, lines in stanzas().items():
        text = "\n".join(lines)
        blocks = re.match(r"\s*(\d+) blocks", lines[1])
        assert blocks and value(got, "hw_mdraid_blocks", device) == int(blocks.group(1))
        progress = re.search(r"\((\d+)/(\d+)\)", text)
        ratio = value(got, "hw_mdraid_sync_completed_ratio", device)
        if " inactive " in lines[0]:
            assert ratio is None
        elif progress:
            assert ratio == int(progress.group(1)) / int(progress.group(2)), device
        elif "=DELAYED" in text or "=PENDING" in text:
            assert ratio == 0, device
        else:
            assert ratio == 1, device


def test_array_state_from_sysfs() -> None:
    got = samples(render())
    seen = 0
    for device in stanzas():
        path = SYSFS / "block" / device / "md" / "array_state"
        states = {
            dict(labels)["state"]: v
            for (metric, labels), v in got.items()
            if metric == "hw_mdraid_array_state" and ("device", device) in labels
        }
        if not path.exists():
            assert states == {}
            continue
        seen += 1
        current = path.read_text().strip()
        assert states[current] == 1 and sum(states.values()) == 1
    assert seen


def write_mdstat(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mdstat").write_text(text)
    return root


HEADER = "Personalities : [raid1]\n"


def test_sysfs_degraded_overrides_mdstat(tmp_path: Path) -> None:
    procfs = write_mdstat(
        tmp_path / "proc",
        HEADER + "md5 : active raid1 sda[0] sdb[1]\n      100 blocks [2/2] [UU]\n\n",
    )
    md = tmp_path / "sys" / "block" / "md5" / "md"
    md.mkdir(parents=True)
    (md / "degraded").write_text("1\n")
    (md / "array_state").write_text("not-a-kernel-state\n")
    got = samples(render(procfs, tmp_path / "sys"))
    assert value(got, "hw_mdraid_degraded", "md5") == 1
    assert not [n for n, _ in got if n == "hw_mdraid_array_state"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("garbage\n", "unexpected format"),
        ("", "unexpected format"),
        (HEADER + "md0 : rebuilding raid1 sda[0]\n", "unexpected state"),
        (HEADER + "md0 : active raid1 sda[0] sdb[1] ???\n      10 blocks\n", "unexpected word"),
        (HEADER + "md0 : active raid1 sda[0]\n      lots of blocks [1/1] [U]\n", "blocks"),
    ],
)
def test_garbage_mdstat_is_an_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CollectorError, match=message):
        render(write_mdstat(tmp_path, text), tmp_path)


def test_unreadable_mdstat_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "mdstat").mkdir()
    with pytest.raises(CollectorError, match="cannot read"):
        render(tmp_path, tmp_path)


def test_absent_or_empty_mdstat_is_not_applicable(tmp_path: Path) -> None:
    with pytest.raises(NotApplicable):
        render(tmp_path, tmp_path)
    write_mdstat(tmp_path, HEADER + "unused devices: <none>\n")
    with pytest.raises(NotApplicable):
        render(tmp_path, tmp_path)


def test_exposition_names_and_types() -> None:
    families = {f.name: f.type for f in text_string_to_metric_families(render())}
    for name in (
        "hw_mdraid_info",
        "hw_mdraid_state",
        "hw_mdraid_disks",
        "hw_mdraid_disks_required",
        "hw_mdraid_degraded",
        "hw_mdraid_sync_completed_ratio",
        "hw_mdraid_blocks",
        "hw_mdraid_array_state",
    ):
        assert families[name] == "gauge", name


async def test_collect_runs_in_thread() -> None:
    collector = MdraidCollector(CollectorContext(procfs=PROCFS, sysfs=SYSFS))
    assert any(f.samples for f in await collector.collect())


def test_registration() -> None:
    spec = load_all()["mdraid"]
    assert spec.default_enabled and spec.tool is None and spec.interval == "1m"


def test_exporter_honours_procfs_path(tmp_path: Path) -> None:
    args = ["--collector.disable-defaults", "--collector.mdraid"]
    args += [f"--path.procfs={PROCFS}", f"--path.sysfs={SYSFS}"]
    with run_exporter(args, tmp_path) as exporter:
        got = scrape(exporter)
    for device, lines in stanzas().items():
        status_match = re.search(r"\[(\d+)/(\d+)\]", lines[1])
        if status_match and not (SYSFS / "block" / device).exists():
            missing = int(status_match.group(1)) - int(status_match.group(2))
            assert value(got, "hw_mdraid_degraded", device) == missing, device


# Inserted after the fixture's first array (md3): an unknown state, a size past any float,
# md3 again.
ODD_ARRAYS = (
    "md50 : rebuilding raid1 sda5[0] sdb5[1]\n      1024 blocks [2/2] [UU]\n\n"
    "md51 : active raid1 sda6[0] sdb6[1]\n      " + "9" * 400 + " blocks [2/2] [UU]\n\n"
    "md3 : active raid1 sdx1[0] sdy1[1]\n      1024 blocks [2/2] [UU]\n\n"
)


def with_odd_arrays(root: Path) -> Path:
    first = MDSTAT.index("\nmd127 ")
    return write_mdstat(root, MDSTAT[: first + 1] + ODD_ARRAYS + MDSTAT[first + 1 :])


async def test_odd_arrays_are_skipped_and_counted_the_rest_kept(tmp_path: Path) -> None:
    collector = MdraidCollector(CollectorContext(procfs=with_odd_arrays(tmp_path), sysfs=SYSFS))
    got = samples(await collector.collect())  # in the collector's worker thread
    assert got == samples(render())  # every other array exactly as without the odd ones
    skipped = collector.take_skipped()
    assert skipped.count == 3
    assert skipped.first[0] == "md50: unexpected state 'rebuilding'"
    assert skipped.first[1].startswith("md51: number out of range: 999")
    assert skipped.first[2] == "md3: listed twice (the first one is kept)"


def test_odd_arrays_through_the_exporter(tmp_path: Path) -> None:
    procfs = with_odd_arrays(tmp_path / "proc")
    args = ["--collector.disable-defaults", "--collector.mdraid"]
    args += [f"--path.procfs={procfs}", f"--path.sysfs={SYSFS}"]
    with run_exporter(args, tmp_path) as exporter:
        assert_unreadable(exporter, "mdraid", 3, "md50: unexpected state", "md51: number")
        got = scrape(exporter)
    assert value(got, "hw_mdraid_state", "md127", state="active") == 1
    assert not [labels for _, labels in got if ("device", "md50") in labels]
