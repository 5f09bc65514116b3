"""The ipmi collector on the fake ipmitool: values from the fixtures, failures, timeouts."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from collectors.base import CollectorContext, CollectorError, NotApplicable
from collectors.ipmi import IpmiCollector
from collectors.ipmi_parse import parse_sdr_elist
from collectors.registry import load_all
from exporter.main import drop_missing_tools
from exporter.runner import CommandRunner
from tests.exposition import Samples, key, samples, scrape
from tests.processes import assert_gone
from tests.support import REPO, fake_path, run_exporter

FIXTURES = REPO / "tests" / "fixtures" / "ipmitool"
# Units as ipmitool prints them -> the metric the collector must fill.
UNIT_METRICS = {
    "degrees C": "hw_ipmi_temperature_celsius",
    "RPM": "hw_ipmi_fan_speed_rpm",
    "Volts": "hw_ipmi_voltage_volts",
    "Amps": "hw_ipmi_current_amperes",
    "Watts": "hw_ipmi_power_watts",
}
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
    """Repeated names get " (2)", " (3)"... in listing order, as the collector documents."""
    seen: dict[str, int] = {}
    result = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        result.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return result


def expected_sdr() -> tuple[Samples, dict[str, int], set[str]]:
    """Values and states the sdr elist fixtures imply, and the sensors without a reading."""
    rows = fixture_rows("sdr_elist_full.txt") + fixture_rows("sdr_elist_compact.txt")
    names = with_duplicates([r[0] for r in rows])
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
                expected[key(kind, sensor=sensor)] = float(number)
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
    assert {"Temp", "Temp (2)"} <= {dict(lab)["sensor"] for _, lab in got if lab}
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
            assert got[key(UNIT_METRICS[unit], sensor=sensor)] == float(value)
            checked += 1
        assert state_of(got, sensor) == THRESHOLD_STATE[status]
    assert checked >= 10


async def test_unsupported_dcmi_is_not_an_error() -> None:
    got = await collect(FAKE_IPMITOOL_MODE="nodcmi")
    assert not [k for k in got if k[0].startswith("hw_ipmi_dcmi")]
    assert got[key("hw_ipmi_sel_entries")] == int(sel_fixture()["Entries"])
    assert key("hw_ipmi_temperature_celsius", sensor="CPU1 Temp") in got


async def test_deactivated_dcmi_measurement_exports_no_power() -> None:
    got = await collect(options={"sel": "off"}, FAKE_IPMITOOL_MODE="dcmi-deactivated")
    assert not [k for k in got if k[0].startswith("hw_ipmi_dcmi")]


@pytest.mark.parametrize("mode", ["sel:exit1", "sel:garbage", "sel:denied"])
async def test_failing_sel_keeps_the_sensors(mode: str) -> None:
    got = await collect(FAKE_IPMITOOL_MODE=mode)
    assert not [k for k in got if k[0].startswith("hw_ipmi_sel")]
    assert got[key("hw_ipmi_dcmi_power_consumption_watts")] > 0
    assert state_of(got, "PS2 Status") == 2


@pytest.mark.parametrize("mode", ["garbage", "truncated"])
async def test_garbage_sensor_output_is_a_clear_error(mode: str) -> None:
    with pytest.raises(CollectorError, match=r"unexpected ipmitool sdr elist output at line \d+"):
        await collect(FAKE_IPMITOOL_MODE=mode)


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
    exhaust, long_reading, watchdog = parse_sdr_elist(text)
    assert exhaust.type == "temperature" and exhaust.value == pytest.approx(40.0)
    assert (long_reading.type, long_reading.value) == ("temperature", -12.34)
    assert (watchdog.type, watchdog.state) == ("discrete", 0)


def test_end_to_end_through_the_exporter(tmp_path: Path) -> None:
    args = ["--collector.disable-defaults", "--collector.ipmi"]
    with run_exporter(args, tmp_path) as exporter:
        got = scrape(exporter)
        stats = json.loads(exporter.get("/cache/stats")[1])
    assert stats["collectors"]["ipmi"]["state"] == "ok", stats["collectors"]["ipmi"]
    expected, states, _ = expected_sdr()
    for sample, value in expected.items():
        assert got[sample] == pytest.approx(value), sample
    for sensor, state in states.items():
        assert state_of(got, sensor) == state, sensor
    assert got[key("hw_ipmi_sel_entries")] == int(sel_fixture()["Entries"])
    dcmi = dcmi_fixture()["Instantaneous power reading"]
    assert got[key("hw_ipmi_dcmi_power_consumption_watts")] == dcmi
