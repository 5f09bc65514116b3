"""The ipmi collector on the fake ipmitool: values from the fixtures, failures, timeouts."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from collectors.base import CollectorContext, CollectorError, NotApplicable
from collectors.ipmi import IpmiCollector
from collectors.ipmi_parse import Reading, parse_sdr_elist, unique_names
from collectors.registry import load_all
from collectors.toolkit.runner import CommandRunner
from exporter.main import drop_missing_tools
from tests.exposition import Samples, exposition, key, samples, scrape
from tests.processes import assert_gone
from tests.prom import promtool
from tests.support import REPO, fake_path, run_exporter
from tests.unreadable import assert_unreadable

FIXTURES = REPO / "tests" / "fixtures" / "ipmitool"
# Units as ipmitool prints them -> the metric the collector must fill.
UNIT_METRICS = {
    "degrees C": "hw_ipmi_temperature_celsius",
    "RPM": "hw_ipmi_fan_speed_rpm",
    "Volts": "hw_ipmi_voltage_volts",
    "Amps": "hw_ipmi_current_amperes",
    "Watts": "hw_ipmi_power_watts",
    "percent": "hw_ipmi_sensor_ratio",
}
UNIT_SCALE = {"percent": 0.01}  # percent sensors are exported as a ratio
THRESHOLD_STATE = {"ok": 0, "nc": 1, "unc": 1, "lnc": 1, "cr": 2, "lcr": 2, "ucr": 2, "nr": 2}
# The discrete states that occur in the fixtures and the severity they must map to.
DISCRETE_STATE = {
    "Presence detected": 0,
    "Drive Present": 0,
    "Power Supply AC lost": 2,
    "Predictive Failure": 1,
    "Non-Redundant: Sufficient from Redundant": 1,
}


def runner(**env: str) -> CommandRunner:
    return CommandRunner(env={**os.environ, "PATH": fake_path(), **env})


async def collect(timeout: float = 10.0, options: dict[str, str] | None = None, **env: str):
    ctx = CollectorContext(runner=runner(**env), timeout=timeout, options=options or {})
    return samples(await IpmiCollector(ctx).collect())


def fixture_rows(name: str) -> list[list[str]]:
    text = (FIXTURES / name).read_text()
    return [[f.strip() for f in line.split("|")] for line in text.splitlines() if line.strip()]


def with_duplicates(names: list[str]) -> list[str]:
    """``ipmitool sensor`` has no entity: repeated names get " (2)", " (3)"... in order."""
    seen: dict[str, int] = {}
    result = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        result.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return result


def with_entities(rows: list[list[str]]) -> list[str]:
    """``sdr elist`` rows: a repeated name gets its entity id, "Temp (3.1)", "Temp (3.2)"."""
    names = [r[0] for r in rows]
    repeated = {n for n in names if names.count(n) > 1}
    entities = [(r[0], r[3]) for r in rows if r[0] in repeated]
    assert len(set(entities)) == len(entities)  # the fixture's repeated names differ in entity
    return [f"{r[0]} ({r[3]})" if r[0] in repeated else r[0] for r in rows]


def expected_sdr() -> tuple[Samples, dict[str, int], set[str]]:
    """Values and states the sdr elist fixtures imply, and the sensors without a reading."""
    rows = fixture_rows("sdr_elist_full.txt") + fixture_rows("sdr_elist_compact.txt")
    names = with_entities(rows)
    expected: Samples = {}
    states: dict[str, int] = {}
    unread = set()
    for sensor, (_, _, status, _, reading) in zip(names, rows, strict=True):
        if status == "ns":
            unread.add(sensor)
            continue
        number, _, unit = reading.partition(" ")
        if re.fullmatch(r"-?\d+(\.\d+)?", number):
            kind = UNIT_METRICS.get(unit)
            if kind:
                expected[key(kind, sensor=sensor)] = float(number) * UNIT_SCALE.get(unit, 1)
            state = THRESHOLD_STATE[status]
        else:
            state = max((DISCRETE_STATE[s] for s in reading.split(", ") if s), default=0)
        states[sensor] = state
    return expected, states, unread


def state_of(got: Samples, sensor: str) -> float:
    """The hw_ipmi_sensor_state value of one sensor (whatever its type label)."""
    found = [
        v
        for (n, lab), v in got.items()
        if n == "hw_ipmi_sensor_state" and ("sensor", sensor) in lab
    ]
    assert len(found) == 1, (sensor, found)
    return found[0]


def dcmi_fixture() -> dict[str, float]:
    text = (FIXTURES / "dcmi_power_reading.txt").read_text()
    return {k: float(v) for k, v in re.findall(r"(\w[\w ]+?):\s+(\d+) Watts", text)}


def sel_fixture() -> dict[str, str]:
    lines = (FIXTURES / "sel_info.txt").read_text().splitlines()
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


async def test_sdr_sensors_dcmi_and_sel_equal_the_fixtures() -> None:
    got = await collect()
    expected, states, unread = expected_sdr()
    assert len(expected) >= 10 and len(states) >= 20
    for sample, value in expected.items():
        assert got[sample] == pytest.approx(value), sample
    for sensor, state in states.items():
        assert state_of(got, sensor) == state, sensor
    assert {"Temp (3.1)", "Temp (3.2)"} <= {dict(lab)["sensor"] for _, lab in got if lab}
    for sensor in unread:  # "ns": no value and no state, never a made-up 0
        assert not [k for k in got if ("sensor", sensor) in k[1]], sensor
    assert state_of(got, "PS2 Status") == 2 and state_of(got, "FAN2") == 2
    dcmi = dcmi_fixture()
    assert got[key("hw_ipmi_dcmi_power_consumption_watts")] == dcmi["Instantaneous power reading"]
    assert (
        got[key("hw_ipmi_dcmi_power_consumption_average_watts")]
        == dcmi["Average power reading over sample period"]
    )
    sel = sel_fixture()
    assert got[key("hw_ipmi_sel_entries")] == int(sel["Entries"])
    assert got[key("hw_ipmi_sel_free_bytes")] == int(sel["Free Space"].split()[0])
    assert got[key("hw_ipmi_sel_used_ratio")] == int(sel["Percent Used"].rstrip("%")) / 100


async def test_sensor_source_equals_the_fixture() -> None:
    got = await collect(options={"source": "sensor", "dcmi": "false", "sel": "no"})
    assert not [k for k in got if k[0].startswith(("hw_ipmi_sel", "hw_ipmi_dcmi"))]
    rows = fixture_rows("sensor.txt")
    names = with_duplicates([r[0] for r in rows])
    checked = 0
    for sensor, row in zip(names, rows, strict=True):
        value, unit, status = row[1:4]
        if unit == "discrete" or status == "na":
            assert not [k for k in got if ("sensor", sensor) in k[1]], sensor
            continue
        if unit in UNIT_METRICS:
            scaled = float(value) * UNIT_SCALE.get(unit, 1)
            assert got[key(UNIT_METRICS[unit], sensor=sensor)] == pytest.approx(scaled)
            checked += 1
        assert state_of(got, sensor) == THRESHOLD_STATE[status]
    assert checked >= 10
    assert {"Temp", "Temp (2)"} <= {dict(lab)["sensor"] for _, lab in got if lab}


async def test_unsupported_dcmi_is_not_an_error() -> None:
    got = await collect(FAKE_IPMITOOL_MODE="nodcmi")
    assert not [k for k in got if k[0].startswith("hw_ipmi_dcmi")]
    assert got[key("hw_ipmi_sel_entries")] == int(sel_fixture()["Entries"])
    assert key("hw_ipmi_temperature_celsius", sensor="CPU1 Temp") in got


async def test_deactivated_dcmi_measurement_exports_no_power() -> None:
    got = await collect(options={"sel": "off"}, FAKE_IPMITOOL_MODE="dcmi-deactivated")
    dcmi = [k for k in got if k[0].startswith("hw_ipmi_dcmi")]
    assert dcmi == [key("hw_ipmi_dcmi_power_reading_activated")]
    assert got[key("hw_ipmi_dcmi_power_reading_activated")] == 0


async def test_openbmc_deactivated_but_filled_dcmi_is_exported() -> None:
    """Real OpenBMC (Witherspoon) output: readings filled, state 'deactivated'."""
    got = await collect(options={"sel": "off"}, FAKE_IPMITOOL_MODE="dcmi-openbmc")
    assert got[key("hw_ipmi_dcmi_power_reading_activated")] == 0
    assert got[key("hw_ipmi_dcmi_power_consumption_watts")] == 319
    assert got[key("hw_ipmi_dcmi_power_consumption_average_watts")] == 319
    got = await collect(options={"sel": "off"})
    assert got[key("hw_ipmi_dcmi_power_reading_activated")] == 1


@pytest.mark.parametrize("source", ["sdr", "sensor"])
async def test_percent_sensors_are_ratios(source: str) -> None:
    got = await collect(options={"source": source, "dcmi": "false", "sel": "off"})
    assert got[key("hw_ipmi_sensor_ratio", sensor="CPU Usage")] == pytest.approx(0.35)
    assert state_of(got, "CPU Usage") == 0


@pytest.mark.parametrize("mode", ["sel:exit1", "sel:garbage", "sel:denied"])
async def test_failing_sel_keeps_the_sensors(mode: str) -> None:
    got = await collect(FAKE_IPMITOOL_MODE=mode)
    assert not [k for k in got if k[0].startswith("hw_ipmi_sel")]
    assert got[key("hw_ipmi_dcmi_power_consumption_watts")] > 0
    assert state_of(got, "PS2 Status") == 2


async def test_garbage_sensor_output_is_a_clear_error() -> None:
    with pytest.raises(CollectorError, match=r"unexpected ipmitool sdr elist output at line 1: "):
        await collect(FAKE_IPMITOOL_MODE="garbage")


async def test_truncated_output_skips_the_cut_line_and_keeps_the_rest() -> None:
    collector = IpmiCollector(CollectorContext(runner=runner(FAKE_IPMITOOL_MODE="sdr:truncated")))
    got = samples(await collector.collect())
    skipped = collector.take_skipped()
    assert skipped.count == 1 and "expected 5 '|'-separated fields" in skipped.first[0]
    assert got[key("hw_ipmi_temperature_celsius", sensor="CPU1 Temp")] == 48
    assert got[key("hw_ipmi_power_watts", sensor="PS1 Input Power")] == 312


async def test_permission_denied_names_root_or_device_access() -> None:
    with pytest.raises(CollectorError) as err:
        await collect(FAKE_IPMITOOL_MODE="denied")
    assert "root" in str(err.value) and "/dev/ipmi0" in str(err.value)


async def test_no_ipmi_device_is_not_applicable() -> None:
    with pytest.raises(NotApplicable, match="ipmi_si"):
        await collect(FAKE_IPMITOOL_MODE="nodevice")


async def test_failing_ipmitool_reports_its_error() -> None:
    with pytest.raises(CollectorError, match="exit status 1: Get Device ID command failed"):
        await collect(FAKE_IPMITOOL_MODE="exit1")


async def test_hang_times_out_and_kills_the_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    started = time.monotonic()
    with pytest.raises(CollectorError, match="timed out"):
        await collect(2.5, FAKE_IPMITOOL_MODE="hang", FAKE_IPMITOOL_PIDFILE=str(pidfile))
    assert time.monotonic() - started < 10  # bounded: the fake would sleep 300 s
    assert_gone(pidfile)


async def test_hanging_sel_is_bounded_and_keeps_the_sensors(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    started = time.monotonic()
    got = await collect(3.0, FAKE_IPMITOOL_MODE="sel:hang", FAKE_IPMITOOL_PIDFILE=str(pidfile))
    assert time.monotonic() - started < 10  # bounded: the fake would sleep 300 s
    assert not [k for k in got if k[0].startswith("hw_ipmi_sel")]
    assert state_of(got, "FAN2") == 2
    assert_gone(pidfile)


async def test_missing_tool_is_not_applicable_and_skipped(tmp_path: Path) -> None:
    empty = CommandRunner(env={"PATH": str(tmp_path)})
    with pytest.raises(NotApplicable, match="not installed"):
        await IpmiCollector(CollectorContext(runner=empty)).collect()
    registry = load_all()
    assert drop_missing_tools(["ipmi"], set(), registry, empty) == []
    with pytest.raises(SystemExit, match="ipmitool"):
        drop_missing_tools(["ipmi"], {"ipmi"}, registry, empty)
    assert drop_missing_tools(["ipmi"], {"ipmi"}, registry, runner()) == ["ipmi"]


def test_parser_units_and_unknown_states() -> None:
    text = (
        "Exhaust Temp     | 05h | ok  |  7.1 | 104 degrees F\n"
        "Long Reading     | 06h | ok  |  7.1 | -12.34 degrees \n"
        "Watchdog         | 07h | ok  |  7.1 | Transition to Running\n"
    )
    skipped: list[tuple[str, str]] = []
    exhaust, long_reading, watchdog = parse_sdr_elist(text, lambda *item: skipped.append(item))
    assert skipped == []
    assert exhaust.type == "temperature" and exhaust.value == pytest.approx(40.0)
    assert (long_reading.type, long_reading.value) == ("temperature", -12.34)
    assert (watchdog.type, watchdog.state) == ("discrete", 0)


def test_end_to_end_through_the_exporter(tmp_path: Path) -> None:
    args = ["--collector.disable-defaults", "--collector.ipmi"]
    with run_exporter(args, tmp_path) as exporter:
        got = scrape(exporter)
        stats = json.loads(exporter.get("/cache/stats")[1])
    assert stats["collectors"]["ipmi"]["status"] == "ok", stats["collectors"]["ipmi"]
    expected, states, _ = expected_sdr()
    for sample, value in expected.items():
        assert got[sample] == pytest.approx(value), sample
    for sensor, state in states.items():
        assert state_of(got, sensor) == state, sensor
    assert got[key("hw_ipmi_sel_entries")] == int(sel_fixture()["Entries"])
    dcmi = dcmi_fixture()["Instantaneous power reading"]
    assert got[key("hw_ipmi_dcmi_power_consumption_watts")] == dcmi


def fixture_copy(tmp_path: Path, changes: dict[str, str]) -> Path:
    """A copy of the ipmitool fixtures with some files' text replaced."""
    folder = tmp_path / "ipmitool"
    shutil.copytree(FIXTURES, folder)
    for name, text in changes.items():
        (folder / name).write_text(text)
    return folder


def exposed_series(text: str) -> list[tuple[str, frozenset[tuple[str, str]]]]:
    """Every sample's (name, labels) in a text exposition, duplicates included."""
    families = text_string_to_metric_families(text)
    return [(s.name, frozenset(s.labels.items())) for f in families for s in f.samples]


# A third "Temp" with the entity and number of the first, and names the suffixes could take.
CRAFTED_SDR = (
    "Temp             | 0Eh | ok  |  3.1 | 44 degrees C\n"
    "Temp (2)         | 20h | ok  |  7.1 | 30 degrees C\n"
    "Temp (3.1)       | 21h | ok  |  7.1 | 31 degrees C\n"
    "Temp (0Eh)       | 22h | ok  |  7.1 | 32 degrees C\n"
)
CRAFTED_SENSOR = "".join(
    f"{name:<17}| {value:<11}| degrees C  | ok    " + "| na        " * 6 + "\n"
    for name, value in (("Temp", "44.000"), ("Temp (2)", "30.000"), ("Temp (3)", "31.000"))
)


@pytest.mark.parametrize(
    ("source", "name", "extra"),
    [("sdr", "sdr_elist_full.txt", CRAFTED_SDR), ("sensor", "sensor.txt", CRAFTED_SENSOR)],
)
async def test_repeated_names_never_share_a_series(
    tmp_path: Path, source: str, name: str, extra: str
) -> None:
    text = (FIXTURES / name).read_text() + extra
    folder = fixture_copy(tmp_path, {name: text})
    ctx = CollectorContext(
        runner=runner(FAKE_IPMITOOL_FIXTURES=str(folder)), options={"source": source}
    )
    body = exposition(await IpmiCollector(ctx).collect())
    series = exposed_series(body.decode())
    assert len(series) == len(set(series)), sorted(s for s in series if series.count(s) > 1)
    temperatures = [
        v for (n, _), v in samples(body.decode()).items() if n == "hw_ipmi_temperature_celsius"
    ]
    rows = [[f.strip() for f in line.split("|")] for line in text.splitlines() if line.strip()]
    if source == "sdr":
        listed = [float(r[4].split()[0]) for r in rows if r[4].endswith(" degrees C")]
    else:
        listed = [float(r[1]) for r in rows if r[2] == "degrees C"]
    assert sorted(temperatures) == sorted(listed)  # none dropped, none doubled
    lint = promtool("check", "metrics", stdin=body)
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (
            [("Temp", "", ""), ("Temp", "", ""), ("Temp (2)", "", "")],
            ["Temp", "Temp (3)", "Temp (2)"],
        ),
        (
            [("Temp", "3.1", "0Eh"), ("Temp", "3.1", "0Fh"), ("Temp (0Fh)", "7.1", "10h")],
            ["Temp (0Eh)", "Temp (2)", "Temp (0Fh)"],
        ),
        ([("Temp", "3.1", "0Eh"), ("Temp", "3.2", "0Fh")], ["Temp (3.1)", "Temp (3.2)"]),
    ],
)
def test_unique_names_examples(names: list[tuple[str, str, str]], expected: list[str]) -> None:
    readings = [Reading(n, "temperature", 1.0, 0, entity, number) for n, entity, number in names]
    assert [r.sensor for r in unique_names(readings)] == expected


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["Temp", "Temp (2)", "Temp (3)", "Temp (3.1)", "Temp (0Eh)", "Temp (2) (2)"]
            ),
            st.sampled_from(["", "3.1", "3.2"]),
            st.sampled_from(["", "0Eh", "0Fh", "2"]),
        ),
        max_size=12,
    )
)
def test_unique_names_whatever_the_input(names: list[tuple[str, str, str]]) -> None:
    readings = [Reading(n, "temperature", 1.0, 0, entity, number) for n, entity, number in names]
    result = [r.sensor for r in unique_names(readings)]
    assert len(result) == len(set(result)) == len(readings)
    assert result == [r.sensor for r in unique_names(readings)]  # deterministic
    listed = [n for n, _, _ in names]
    for original, renamed in zip(listed, result, strict=True):
        assert renamed == original if listed.count(original) == 1 else renamed.startswith(original)


SDR_BAD_LINES = {
    4: "FAN9             | 44h | ok\n",  # cut short
    7: "FAN8             | 45h | weird | 29.5 | 100 RPM\n",  # unknown status
}


def with_lines(name: str, lines: dict[int, str]) -> str:
    """A fixture's text with ``lines`` inserted before the given 0-based line numbers."""
    text = (FIXTURES / name).read_text().splitlines(keepends=True)
    for index in sorted(lines, reverse=True):
        text.insert(index, lines[index])
    return "".join(text)


async def test_unreadable_sdr_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    folder = fixture_copy(
        tmp_path, {"sdr_elist_full.txt": with_lines("sdr_elist_full.txt", SDR_BAD_LINES)}
    )
    collector = IpmiCollector(CollectorContext(runner=runner(FAKE_IPMITOOL_FIXTURES=str(folder))))
    got = samples(await collector.collect())
    expected, states, _ = expected_sdr()
    for sample, reading in expected.items():
        assert got[sample] == pytest.approx(reading), sample
    for sensor, state in states.items():
        assert state_of(got, sensor) == state, sensor
    assert not [k for k in got if ("sensor", "FAN8") in k[1] or ("sensor", "FAN9") in k[1]]
    skipped = collector.take_skipped()
    assert skipped.count == 2
    assert skipped.first[0].startswith("ipmitool sdr elist line 5: expected 5 '|'-separated")
    assert skipped.first[1] == "ipmitool sdr elist line 9: sensor 'FAN8': unexpected status 'weird'"


async def test_unreadable_sensor_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    bad = {
        2: "FAN9             | fast       | RPM        | ok    " + "| na        " * 6 + "\n",
        3: "FAN8             | 1e999      | RPM        | ok    " + "| na        " * 6 + "\n",
    }
    folder = fixture_copy(tmp_path, {"sensor.txt": with_lines("sensor.txt", bad)})
    ctx = CollectorContext(
        runner=runner(FAKE_IPMITOOL_FIXTURES=str(folder)), options={"source": "sensor"}
    )
    collector = IpmiCollector(ctx)
    got = samples(await collector.collect())
    assert got[key("hw_ipmi_fan_speed_rpm", sensor="FAN1")] == 4200
    assert not [k for k in got if ("sensor", "FAN8") in k[1] or ("sensor", "FAN9") in k[1]]
    skipped = collector.take_skipped()
    assert skipped.count == 2 and "unexpected value 'fast'" in skipped.first[0]
    assert "'1e999' out of range" in skipped.first[1]


async def test_unreadable_sel_output_is_an_unreadable_item() -> None:
    collector = IpmiCollector(CollectorContext(runner=runner(FAKE_IPMITOOL_MODE="sel:garbage")))
    got = samples(await collector.collect())
    assert not [k for k in got if k[0].startswith("hw_ipmi_sel")]
    assert got[key("hw_ipmi_fan_speed_rpm", sensor="FAN1")] == 4200
    skipped = collector.take_skipped()
    assert skipped.count == 1 and skipped.first[0].startswith("ipmitool sel info: ")


def test_unreadable_line_through_the_exporter(tmp_path: Path) -> None:
    folder = fixture_copy(
        tmp_path, {"sdr_elist_full.txt": with_lines("sdr_elist_full.txt", SDR_BAD_LINES)}
    )
    args = ["--collector.disable-defaults", "--collector.ipmi"]
    env = {"FAKE_IPMITOOL_FIXTURES": str(folder)}
    with run_exporter(args, tmp_path, env=env) as exporter:
        assert_unreadable(exporter, "ipmi", 2, "ipmitool sdr elist line 5", "FAN8")
        got = scrape(exporter)
    assert got[key("hw_ipmi_fan_speed_rpm", sensor="FAN1")] == 4200
    assert got[key("hw_ipmi_temperature_celsius", sensor="Temp (3.2)")] == 43
