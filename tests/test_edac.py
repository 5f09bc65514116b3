"""edac collector: fixture memory controller counters, garbage, absent tree, exposition."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collectors.base import CollectorContext, CollectorError, NotApplicable
from collectors.edac import EdacCollector
from collectors.registry import load_all
from tests.exposition import exposition, key, samples, scrape
from tests.support import SYSFS, run_exporter

MC = SYSFS / "devices" / "system" / "edac" / "mc"


def render(sysfs: Path) -> str:
    families = EdacCollector(CollectorContext(sysfs=sysfs)).collect_blocking()
    return exposition(families).decode()


def number(path: Path) -> float:
    return float(path.read_text().strip())


def test_controller_and_csrow_counts_match_fixture() -> None:
    got = samples(render(SYSFS))
    controllers = sorted(MC.glob("mc[0-9]*"))
    assert controllers
    expected = {}
    for mc in controllers:
        c = mc.name.removeprefix("mc")
        expected[key("hw_edac_correctable_errors_total", controller=c)] = number(mc / "ce_count")
        expected[key("hw_edac_uncorrectable_errors_total", controller=c)] = number(mc / "ue_count")
        for kind, name in (("ce", "correctable"), ("ue", "uncorrectable")):
            noinfo = key(f"hw_edac_csrow_{name}_errors_total", controller=c, csrow="unknown")
            expected[noinfo] = number(mc / f"{kind}_noinfo_count")
            for row in sorted(mc.glob("csrow[0-9]*")):
                labels = {"controller": c, "csrow": row.name.removeprefix("csrow")}
                sample = key(f"hw_edac_csrow_{name}_errors_total", **labels)
                expected[sample] = number(row / f"{kind}_count")
    counters = {k: v for k, v in got.items() if not k[0].endswith("_created")}
    assert counters == expected


def test_required_names_and_types() -> None:
    families = {f.name: f for f in text_string_to_metric_families(render(SYSFS))}
    for name in (
        "hw_edac_correctable_errors",
        "hw_edac_uncorrectable_errors",
        "hw_edac_csrow_correctable_errors",
        "hw_edac_csrow_uncorrectable_errors",
    ):
        assert families[name].type == "counter"
        assert all(s.name == f"{name}_total" for s in families[name].samples)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_garbage_and_unreadable_files_are_skipped(tmp_path: Path) -> None:
    mc = tmp_path / "devices" / "system" / "edac" / "mc"
    write(mc / "mc0" / "ce_count", "7\n")
    write(mc / "mc0" / "ue_count", "not a number\n")
    write(mc / "mc0" / "csrow0" / "ce_count", "3\n")
    (mc / "mc0" / "csrow0" / "ue_count").mkdir()  # read fails (EISDIR), like EIO
    got = samples(render(tmp_path))
    assert got == {
        key("hw_edac_correctable_errors_total", controller="0"): 7.0,
        key("hw_edac_csrow_correctable_errors_total", controller="0", csrow="0"): 3.0,
    }


def test_nothing_readable_is_an_error(tmp_path: Path) -> None:
    mc = tmp_path / "devices" / "system" / "edac" / "mc"
    write(mc / "mc0" / "ce_count", "garbage")
    with pytest.raises(CollectorError, match="no readable error counters"):
        render(tmp_path)


def test_absent_tree_is_not_applicable(tmp_path: Path) -> None:
    with pytest.raises(NotApplicable):
        render(tmp_path)
    (tmp_path / "devices" / "system" / "edac" / "mc").mkdir(parents=True)
    with pytest.raises(NotApplicable):
        render(tmp_path)


def test_registration() -> None:
    spec = load_all()["edac"]
    assert spec.default_enabled and spec.tool is None and spec.interval == "5m"


def test_exporter_serves_uncorrectable_counter(tmp_path: Path) -> None:
    args = ["--collector.disable-defaults", "--collector.edac", f"--path.sysfs={SYSFS}"]
    with run_exporter(args, tmp_path) as exporter:
        got = scrape(exporter)
    for mc in MC.glob("mc[0-9]*"):
        sample = key("hw_edac_uncorrectable_errors_total", controller=mc.name[2:])
        assert got[sample] == number(mc / "ue_count")
