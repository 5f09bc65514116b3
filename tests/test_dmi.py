"""dmi collector: fixture /sys/class/dmi/id, serial gating, absent tree, exposition."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collectors.base import CollectorContext, NotApplicable
from collectors.dmi import DmiCollector
from collectors.registry import load_all
from tests.exposition import exposition
from tests.support import SYSFS, run_exporter

DMI = SYSFS / "class" / "dmi" / "id"
# Label -> fixture file, as the issue names them (bios, system, board, chassis).
EXPECTED = {
    "bios_vendor": "bios_vendor",
    "bios_version": "bios_version",
    "bios_date": "bios_date",
    "system_vendor": "sys_vendor",
    "product_name": "product_name",
    "board_vendor": "board_vendor",
    "board_name": "board_name",
    "board_version": "board_version",
    "chassis_vendor": "chassis_vendor",
    "chassis_type": "chassis_type",
}
SENSITIVE = ("product_serial", "product_uuid", "board_serial", "chassis_serial")


def fixture_text(name: str) -> str:
    return (DMI / name).read_text(errors="replace").strip()


def collect(sysfs: Path = SYSFS, **options: str) -> tuple[dict[str, str], str]:
    """The single hw_dmi_info sample's labels and the rendered exposition text."""
    families = DmiCollector(CollectorContext(sysfs=sysfs, options=options)).collect_blocking()
    text = exposition(families).decode()
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert parsed["hw_dmi_info"].type == "gauge"
    [sample] = parsed["hw_dmi_info"].samples
    assert sample.value == 1.0
    return dict(sample.labels), text


def test_labels_match_fixture_files() -> None:
    labels, _ = collect()
    for label, filename in EXPECTED.items():
        assert labels[label] == fixture_text(filename), label


def test_control_characters_are_dropped() -> None:
    raw = fixture_text("product_version")
    assert any(not c.isprintable() for c in raw), "fixture no longer has control characters"
    labels, _ = collect()
    assert labels["product_version"] == "".join(c for c in raw if c.isprintable()).strip()


def test_empty_files_give_no_label() -> None:
    assert fixture_text("chassis_version") == ""
    labels, _ = collect()
    assert "chassis_version" not in labels


def test_serials_absent_by_default() -> None:
    labels, text = collect()
    assert not [name for name in labels if re.search(r"serial|uuid|asset", name)]
    for filename in SENSITIVE:
        value = fixture_text(filename)
        assert value and value not in text, filename


def test_serials_option_exports_them() -> None:
    labels, _ = collect(serials="true")
    for filename in SENSITIVE:
        assert labels[filename] == fixture_text(filename)


def test_unreadable_serial_is_omitted(tmp_path: Path) -> None:
    directory = tmp_path / "class" / "dmi" / "id"
    directory.mkdir(parents=True)
    (directory / "sys_vendor").write_text("Vendor X\n")
    (directory / "product_serial").mkdir()  # reading it fails like a root-only file
    (directory / "board_serial").write_text("B-123\n")
    labels, _ = collect(tmp_path, serials="true")
    assert labels == {"system_vendor": "Vendor X", "board_serial": "B-123"}


def test_absent_tree_is_not_applicable(tmp_path: Path) -> None:
    with pytest.raises(NotApplicable):
        DmiCollector(CollectorContext(sysfs=tmp_path)).collect_blocking()


def test_nothing_readable_is_not_applicable(tmp_path: Path) -> None:
    (tmp_path / "class" / "dmi" / "id").mkdir(parents=True)
    with pytest.raises(NotApplicable):
        DmiCollector(CollectorContext(sysfs=tmp_path)).collect_blocking()


async def test_collect_runs_in_thread() -> None:
    families = await DmiCollector(CollectorContext(sysfs=SYSFS)).collect()
    assert [f.name for f in families] == ["hw_dmi"]


def test_registration() -> None:
    spec = load_all()["dmi"]
    assert spec.default_enabled and spec.tool is None and spec.interval == "24h"
    assert {o.name: o.default for o in spec.options} == {"serials": "false"}


def test_exporter_honours_path_and_serial_flag(tmp_path: Path) -> None:
    base = ["--collector.disable-defaults", "--collector.dmi", f"--path.sysfs={SYSFS}"]
    serial = fixture_text("product_serial")
    for extra, shown in (([], False), (["--collector.dmi.serials=true"], True)):
        with run_exporter([*base, *extra], tmp_path) as exporter:
            status, body = exporter.get("/metrics")
        text = body.decode()
        assert status == 200
        assert f'product_name="{fixture_text("product_name")}"' in text
        assert (f'product_serial="{serial}"' in text) is shown
