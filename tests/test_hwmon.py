"""hwmon collector: fixture chips, unique chip labels, filters, bad files, exposition."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collectors.base import CollectorContext, CollectorError, NotApplicable
from collectors.hwmon import HwmonCollector
from collectors.registry import load_all
from exporter.cli import build_parser
from tests.exposition import Samples, exposition, key, samples, scrape
from tests.support import SYSFS, run_exporter

CLASS = SYSFS / "class" / "hwmon"


def render(sysfs: Path = SYSFS, options: dict[str, str] | None = None) -> str:
    collector = HwmonCollector(CollectorContext(sysfs=sysfs, options=options or {}))
    return exposition(collector.collect_blocking()).decode()


def chips_in(got: Samples) -> set[str]:
    return {dict(labels)["chip"] for _, labels in got if "chip" in dict(labels)}


def fixture_dir(hwmon: str) -> Path:
    """The fixture chip directory (the unpacked tree stores symlinks as text files)."""
    entry = CLASS / hwmon
    return entry if entry.is_dir() else (CLASS / entry.read_text().strip()).resolve()


def milli(path: Path) -> float:
    return int(path.read_text().strip()) / 1000


def test_coretemp_matches_fixture() -> None:
    got = samples(render())
    directory = fixture_dir("hwmon0")
    chip = "platform_coretemp_0"  # bus + device of the chip's device link
    assert (
        got[
            key("hw_hwmon_chip_info", chip=chip, chip_name=(directory / "name").read_text().strip())
        ]
        == 1
    )
    inputs = sorted(directory.glob("temp*_input"))
    assert inputs
    for path in inputs:
        sensor = path.name.removesuffix("_input")
        labels = {"chip": chip, "sensor": sensor}
        assert got[key("hw_hwmon_temperature_celsius", **labels)] == milli(path)
        assert got[key("hw_hwmon_temperature_max_celsius", **labels)] == milli(
            directory / f"{sensor}_max"
        )
        assert got[key("hw_hwmon_temperature_critical_celsius", **labels)] == milli(
            directory / f"{sensor}_crit"
        )
        text = (directory / f"{sensor}_label").read_text().strip()
        assert got[key("hw_hwmon_sensor_info", label=text, **labels)] == 1
        alarm = int((directory / f"{sensor}_crit_alarm").read_text())
        assert got[key("hw_hwmon_sensor_alarm", **labels)] == float(alarm != 0)


def test_fans_voltages_alarms_match_fixture() -> None:
    got = samples(render())
    directory = fixture_dir("hwmon3")
    chip = (directory / "name").read_text().strip()  # no device link: the name is the label
    for path in directory.glob("fan*_input"):
        sensor = path.name.removesuffix("_input")
        assert got[key("hw_hwmon_fan_speed_rpm", chip=chip, sensor=sensor)] == int(path.read_text())
    for path in directory.glob("in*_input"):
        sensor = path.name.removesuffix("_input")
        assert got[key("hw_hwmon_voltage_volts", chip=chip, sensor=sensor)] == milli(path)
    raised = {
        p.name.removesuffix("_alarm")
        for p in directory.glob("*_alarm")
        if p.read_text().strip() != "0"
    }
    assert raised, "fixture has no raised alarm"
    for sensor in raised:
        assert got[key("hw_hwmon_sensor_alarm", chip=chip, sensor=sensor)] == 1


def test_attributes_on_the_device_directory() -> None:
    got = samples(render())
    device = fixture_dir("hwmon2").parent.parent  # applesmc keeps files on the device
    chip = "platform_applesmc_768"
    assert (
        got[key("hw_hwmon_chip_info", chip=chip, chip_name=(device / "name").read_text().strip())]
        == 1
    )
    for path in device.glob("fan*_input"):
        sensor = path.name.removesuffix("_input")
        assert got[key("hw_hwmon_fan_speed_rpm", chip=chip, sensor=sensor)] == int(path.read_text())
        label = (device / f"{sensor}_label").read_text().strip()
        assert got[key("hw_hwmon_sensor_info", chip=chip, sensor=sensor, label=label)] == 1


def test_every_temperature_input_is_exported_once() -> None:
    got = samples(render())
    expected = []
    for entry in CLASS.iterdir():
        directory = fixture_dir(entry.name)
        expected += [milli(p) for p in directory.glob("temp*_input")]
    exported = [v for (name, _), v in got.items() if name == "hw_hwmon_temperature_celsius"]
    assert sorted(exported) == sorted(expected)


def test_chips_sharing_a_device_get_unique_labels() -> None:
    got = samples(render())
    infos = [dict(labels) for name, labels in got if name == "hw_hwmon_chip_info"]
    named = [e.name for e in CLASS.iterdir() if (fixture_dir(e.name) / "name").exists()]
    named += ["hwmon2"]  # its name file lives on the device
    assert len(infos) == len(named)
    assert len({info["chip"] for info in infos}) == len(infos)
    for hwmon in ("hwmon8", "hwmon9", "hwmon10"):  # three radios under one phy device
        directory = fixture_dir(hwmon)
        [info] = [i for i in infos if i["chip_name"] == (directory / "name").read_text().strip()]
        labels = {"chip": info["chip"], "sensor": "temp1"}
        assert got[key("hw_hwmon_temperature_celsius", **labels)] == milli(
            directory / "temp1_input"
        )


def test_chip_without_name_or_device_uses_hwmon_index() -> None:
    got = samples(render())
    directory = fixture_dir("hwmon4")
    assert not (directory / "name").exists() and not (directory / "device").exists()
    for path in directory.glob("temp*_input"):
        sensor = path.name.removesuffix("_input")
        assert got[key("hw_hwmon_temperature_celsius", chip="hwmon4", sensor=sensor)] == milli(path)
    assert not [
        labels
        for name, labels in got
        if name == "hw_hwmon_chip_info" and ("chip", "hwmon4") in labels
    ]


def test_chip_include_and_exclude() -> None:
    everything = chips_in(samples(render()))
    only = chips_in(samples(render(options={"chip-include": "coretemp"})))
    assert only == {"platform_coretemp_0", "platform_coretemp_1"}
    without = chips_in(samples(render(options={"chip-exclude": "^platform_coretemp_0$|mt7996"})))
    assert without == {c for c in everything if c != "platform_coretemp_0" and "ieee80211" not in c}
    assert "platform_coretemp_1" in without


def test_invalid_regex_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser(load_all()).parse_args(["--collector.hwmon.chip-include=("])
    assert exc.value.code == 2
    assert "--collector.hwmon.chip-include: invalid regex '('" in capsys.readouterr().err


def test_real_symlinks_units_and_bad_files(tmp_path: Path) -> None:
    chip_dir = tmp_path / "devices" / "platform" / "foo.0" / "hwmon" / "hwmon7"
    chip_dir.mkdir(parents=True)
    values = {"temp1_input": "42500", "in0_input": "12000", "power1_average": "12500000"}
    values |= {"curr1_input": "1500", "fan1_input": "900", "temp1_max": "garbage", "name": "foo"}
    for name, value in values.items():
        (chip_dir / name).write_text(value + "\n")
    (chip_dir / "temp1_crit").mkdir()  # unreadable attribute (read error like EIO)
    (chip_dir / "device").symlink_to("../../../foo.0")
    (tmp_path / "class" / "hwmon").mkdir(parents=True)
    (tmp_path / "class" / "hwmon" / "hwmon7").symlink_to(
        "../../devices/platform/foo.0/hwmon/hwmon7"
    )
    got = samples(render(tmp_path))
    labels = {"chip": "platform_foo_0"}
    assert got[key("hw_hwmon_temperature_celsius", sensor="temp1", **labels)] == 42.5
    assert got[key("hw_hwmon_voltage_volts", sensor="in0", **labels)] == 12.0
    assert got[key("hw_hwmon_power_watts", sensor="power1", **labels)] == 12.5
    assert got[key("hw_hwmon_current_amperes", sensor="curr1", **labels)] == 1.5
    assert got[key("hw_hwmon_fan_speed_rpm", sensor="fan1", **labels)] == 900
    assert not [
        n
        for n, _ in got
        if n in {"hw_hwmon_temperature_max_celsius", "hw_hwmon_temperature_critical_celsius"}
    ]


def test_absent_or_empty_class_is_not_applicable(tmp_path: Path) -> None:
    with pytest.raises(NotApplicable):
        render(tmp_path)
    (tmp_path / "class" / "hwmon").mkdir(parents=True)
    with pytest.raises(NotApplicable):
        render(tmp_path)


def test_class_path_not_a_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "class").mkdir()
    (tmp_path / "class" / "hwmon").write_text("oops")
    with pytest.raises(CollectorError, match="cannot list"):
        render(tmp_path)


def test_exposition_names_and_types() -> None:
    families = {f.name: f for f in text_string_to_metric_families(render())}
    for name in (
        "hw_hwmon_temperature_celsius",
        "hw_hwmon_temperature_max_celsius",
        "hw_hwmon_temperature_critical_celsius",
        "hw_hwmon_fan_speed_rpm",
        "hw_hwmon_voltage_volts",
        "hw_hwmon_power_watts",
        "hw_hwmon_current_amperes",
        "hw_hwmon_chip_info",
        "hw_hwmon_sensor_info",
        "hw_hwmon_sensor_alarm",
    ):
        assert families[name].type == "gauge", name
    assert all(re.fullmatch(r"hw_hwmon_[a-z_]+", name) for name in families)


async def test_collect_runs_in_thread() -> None:
    collector = HwmonCollector(CollectorContext(sysfs=SYSFS))
    assert any(f.samples for f in await collector.collect())


def test_registration_and_overlap_with_sensors() -> None:
    registry = load_all()
    hwmon = registry["hwmon"]
    assert hwmon.default_enabled and hwmon.tool is None and hwmon.interval == "1m"
    assert {o.name for o in hwmon.options} == {"chip-include", "chip-exclude"}
    assert not registry["sensors"].default_enabled


def test_exporter_honours_path_and_chip_exclude(tmp_path: Path) -> None:
    args = ["--collector.disable-defaults", "--collector.hwmon", f"--path.sysfs={SYSFS}"]
    with run_exporter([*args, "--collector.hwmon.chip-exclude=coretemp"], tmp_path) as exporter:
        got = scrape(exporter)
    chips = {c for c in chips_in(got) if c}
    assert "platform_coretemp_0" not in chips and "nct6779" in chips
    directory = fixture_dir("hwmon8")
    name = (directory / "name").read_text().strip()
    [chip] = [
        dict(labels)["chip"]
        for metric, labels in got
        if metric == "hw_hwmon_chip_info" and ("chip_name", name) in labels
    ]
    assert got[key("hw_hwmon_temperature_celsius", chip=chip, sensor="temp1")] == milli(
        directory / "temp1_input"
    )
