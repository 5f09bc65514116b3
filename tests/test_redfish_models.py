"""The redfish driver on DMTF's mockups: the newer chassis models, the old ones, and faults.

The mockups are served by the tests' aiohttp Redfish service (session login, faults by path);
every expected value is read from the mockup's JSON.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collectors.redfish_families import GAUGES, HEALTH
from collectors.redfish_reader import MAX_MEMBERS
from exporter.app import create_app
from exporter.clock import FakeClock
from exporter.probe_config import load_probe_config
from exporter.settings import Settings
from tests.redfish_faults import FaultyRedfish, probe_config
from tests.redfish_mockups import Mockup, Series, of, parse, sensors_by
from tests.support import REPO

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
NEW = Mockup("public-rackmount1")
OLD = Mockup("public-localstorage")
CHASSIS = "/redfish/v1/Chassis/1U"


class Probe:
    """A FaultyRedfish serving a mockup, and an exporter app probing it."""

    def __init__(self, fake: FaultyRedfish, client: TestClient[Any, Any], target: str) -> None:
        self.fake = fake
        self.client = client
        self.target = target

    async def get(self) -> tuple[str, Series]:
        """Probe once; the text and its samples by (name, part label)."""
        response = await self.client.get("/probe", params={"module": "bmc", "target": self.target})
        assert response.status == 200
        text = await response.text()
        return text, parse(text)


@pytest.fixture
def serve(
    aiohttp_server: ServerFactory, aiohttp_client: ClientFactory, tmp_path: Path
) -> Callable[[dict[str, dict[str, Any]]], Awaitable[Probe]]:
    async def start(tree: dict[str, dict[str, Any]], fake: FaultyRedfish | None = None) -> Probe:
        fake = fake or FaultyRedfish()
        fake.tree = tree
        server = await aiohttp_server(fake.app())
        module = {"timeout": "60s", "request_timeout": "20s"}
        config = load_probe_config(probe_config(tmp_path, module))
        settings = Settings(collectors=(), probe=config)
        app = create_app(settings, clock=FakeClock(), warm_up=False)
        return Probe(fake, await aiohttp_client(app), f"127.0.0.1:{server.port}")

    return start


class ExpandingRedfish(FaultyRedfish):
    """Answers ``$expand=.($levels=1)`` on a collection with its members inline (DSP0266),
    or refuses it with 400 as services without the query do."""

    def __init__(self, refuse: bool = False) -> None:
        super().__init__()
        self.refuse = refuse
        self.expanded: list[str] = []

    async def get(self, request: web.Request) -> web.StreamResponse:
        response = await super().get(request)
        if request.query.get("$expand") != ".($levels=1)" or response.status != 200:
            return response
        if self.refuse:
            return web.json_response({"error": "QueryNotSupported"}, status=400)
        assert isinstance(response, web.Response) and response.text is not None
        collection = json.loads(response.text)
        if "Members" in collection:
            self.expanded.append(request.path)
            links = [m["@odata.id"] for m in collection["Members"]]
            collection["Members"] = [self.tree.get(link, {"@odata.id": link}) for link in links]
        return web.json_response(collection)


def hardware(series: Series) -> Series:
    """The hw_redfish_* samples only (not the poll's timing)."""
    return {key: value for key, value in series.items() if key[0].startswith("hw_redfish_")}


def health(resource: dict[str, Any]) -> float:
    return HEALTH[resource["Status"]["Health"]]


def copied_sensors() -> set[str]:
    """The Sensors of NEW whose readings its fans, power supplies and EnvironmentMetrics copy."""
    uris = [
        f["SpeedPercent"]["DataSourceUri"] for f in NEW.members(CHASSIS + "/ThermalSubsystem/Fans")
    ]
    for supply in NEW.members(CHASSIS + "/PowerSubsystem/PowerSupplies"):
        if "Metrics" in supply:
            metrics = NEW.get(supply["Metrics"]["@odata.id"])
            uris += [metrics[k]["DataSourceUri"] for k in ("InputPowerWatts", "OutputPowerWatts")]
            uris.append(metrics["InputVoltage"]["DataSourceUri"])
    uris.append(NEW.get(CHASSIS + "/EnvironmentMetrics")["PowerWatts"]["DataSourceUri"])
    return set(uris)


def expected_sensors(units: str) -> dict[str, dict[str, Any]]:
    """NEW's Sensors in ``units`` that no component copied, by Name."""
    copied = copied_sensors()
    found = sensors_by(NEW, "1U", units).values()
    return {s["Name"]: s for s in found if s["@odata.id"] not in copied and "SpeedRPM" not in s}


async def test_the_newer_models_each_reading_once(serve: Callable[..., Awaitable[Probe]]) -> None:
    probe = await serve(NEW.tree)
    text, series = await probe.get()
    assert of(series, "hwcache_collector_success") == {"": 1}
    assert of(series, "hwcache_collector_unreadable_items") == {"": 0}

    temperatures = expected_sensors("Cel")
    assert of(series, "hw_redfish_temperature_celsius") == {
        name: s["Reading"] for name, s in temperatures.items()
    }  # ThermalMetrics repeats Intake and Exhaust from their Sensors: not exported again
    assert of(series, "hw_redfish_temperature_health") == {
        name: health(s) for name, s in temperatures.items()
    }
    for units, metric in (("V", "voltage_volts"), ("A", "current_amperes"), ("W", "power_watts")):
        readings = {name: s["Reading"] for name, s in expected_sensors(units).items()}
        assert of(series, f"hw_redfish_{metric}") == readings, metric
    ratios = {name: s["Reading"] / 100 for name, s in expected_sensors("%").items()}
    assert ratios and of(series, "hw_redfish_sensor_ratio") == pytest.approx(ratios)

    fans = NEW.members(CHASSIS + "/ThermalSubsystem/Fans")
    assert of(series, "hw_redfish_fan_speed_ratio") == pytest.approx(
        {f["Name"]: f["SpeedPercent"]["Reading"] / 100 for f in fans}
    )
    assert of(series, "hw_redfish_fan_speed_rpm") == {
        f["Name"]: f["SpeedPercent"]["SpeedRPM"] for f in fans
    }
    assert of(series, "hw_redfish_fan_health") == {f["Name"]: health(f) for f in fans}

    supplies = NEW.members(CHASSIS + "/PowerSubsystem/PowerSupplies")
    present = [s for s in supplies if "Health" in s["Status"]]
    assert of(series, "hw_redfish_power_supply_health") == {s["Name"]: health(s) for s in present}
    metrics = {s["Name"]: NEW.get(s["Metrics"]["@odata.id"]) for s in supplies if "Metrics" in s}
    for key, metric in (
        ("InputPowerWatts", "power_supply_input_watts"),
        ("OutputPowerWatts", "power_supply_output_watts"),
        ("InputVoltage", "power_supply_input_voltage_volts"),
    ):
        readings = {name: m[key]["Reading"] for name, m in metrics.items()}
        assert of(series, f"hw_redfish_{metric}") == readings, metric
    environment = NEW.get(CHASSIS + "/EnvironmentMetrics")
    assert of(series, "hw_redfish_power_consumed_watts") == {
        "EnvironmentMetrics": environment["PowerWatts"]["Reading"]
    }
    assert of(series, "hw_redfish_chassis_health") == {"": health(NEW.get(CHASSIS))}

    system = NEW.get("/redfish/v1/Systems/437XR1138R2")
    assert of(series, "hw_redfish_system_health") == {"": health(system)}
    assert of(series, "hw_redfish_memory_size_bytes") == {
        d["Id"]: d["CapacityMiB"] * 2**20
        for d in NEW.members("/redfish/v1/Systems/437XR1138R2/Memory")
        if "CapacityMiB" in d
    }
    assert f'serial_number="{system["SerialNumber"]}"' in text

    requested = set(probe.fake.requests)
    assert not requested & {CHASSIS + "/Thermal", CHASSIS + "/Power"}  # the new models won
    assert not requested & copied_sensors()  # a copied Sensor is not even read


async def test_the_old_models_when_a_chassis_has_only_those(
    serve: Callable[..., Awaitable[Probe]],
) -> None:
    probe = await serve(OLD.tree)
    _, series = await probe.get()
    assert of(series, "hwcache_collector_success") == {"": 1}
    thermal, power = OLD.get(CHASSIS + "/Thermal"), OLD.get(CHASSIS + "/Power")
    temperatures = [t for t in thermal["Temperatures"] if "ReadingCelsius" in t]
    assert of(series, "hw_redfish_temperature_celsius") == {
        t["Name"]: t["ReadingCelsius"] for t in temperatures
    }
    assert of(series, "hw_redfish_fan_speed_rpm") == {
        f["Name"]: f["Reading"] for f in thermal["Fans"] if f["ReadingUnits"] == "RPM"
    }
    assert of(series, "hw_redfish_voltage_volts") == {
        v["Name"]: v["ReadingVolts"] for v in power["Voltages"]
    }
    assert of(series, "hw_redfish_voltage_health") == {
        v["Name"]: health(v) for v in power["Voltages"]
    }
    assert of(series, "hw_redfish_power_consumed_watts") == {
        c["Name"]: c["PowerConsumedWatts"] for c in power["PowerControl"]
    }
    (supply,) = power["PowerSupplies"]
    assert of(series, "hw_redfish_power_supply_health") == {supply["Name"]: health(supply)}
    assert of(series, "hw_redfish_power_supply_output_watts") == {
        supply["Name"]: supply["LastPowerOutputWatts"]
    }
    assert of(series, "hw_redfish_power_supply_input_voltage_volts") == {
        supply["Name"]: supply["LineInputVoltage"]
    }
    storage = "/redfish/v1/Systems/437XR1138R2/Storage/1"
    drives = [OLD.get(d["@odata.id"]) for d in OLD.get(storage)["Drives"]]
    assert of(series, "hw_redfish_drive_capacity_bytes") == {
        d["Id"]: d["CapacityBytes"] for d in drives
    }
    for metric in ("current_amperes", "power_watts", "sensor_ratio"):
        assert of(series, f"hw_redfish_{metric}") == {}


async def test_an_unreadable_sensor_is_left_out_and_thermal_metrics_fills_in(
    serve: Callable[..., Awaitable[Probe]],
) -> None:
    probe = await serve(NEW.tree)
    excerpts = NEW.get(CHASSIS + "/ThermalSubsystem/ThermalMetrics")["TemperatureReadingsCelsius"]
    excerpt = excerpts[0]
    sensor = NEW.get(excerpt["DataSourceUri"])
    probe.fake.faults[excerpt["DataSourceUri"]] = "500"
    _, series = await probe.get()
    assert of(series, "hwcache_collector_success") == {"": 1}
    assert of(series, "hwcache_collector_unreadable_items") == {"": 1}
    temperatures = of(series, "hw_redfish_temperature_celsius")
    assert sensor["Name"] not in temperatures
    assert temperatures[excerpt["DeviceName"]] == excerpt["Reading"]
    assert len(temperatures) == len(expected_sensors("Cel"))  # the others still there


async def test_an_unreadable_thermal_subsystem_falls_back_to_thermal(
    serve: Callable[..., Awaitable[Probe]],
) -> None:
    probe = await serve(NEW.tree)
    probe.fake.faults[CHASSIS + "/ThermalSubsystem"] = "malformed"
    _, series = await probe.get()
    assert of(series, "hwcache_collector_unreadable_items") == {"": 1}
    thermal = NEW.get(CHASSIS + "/Thermal")
    assert of(series, "hw_redfish_temperature_celsius") == {
        t["Name"]: t["ReadingCelsius"] for t in thermal["Temperatures"] if "ReadingCelsius" in t
    }  # Thermal's, and not the temperature Sensors as well
    assert set(of(series, "hw_redfish_fan_speed_rpm")) == {f["Name"] for f in thermal["Fans"]}
    assert of(series, "hw_redfish_voltage_volts")  # power still from the new model


async def test_sensor_members_are_bounded_and_odd_units_skipped(
    serve: Callable[..., Awaitable[Probe]],
) -> None:
    tree = {path: dict(resource) for path, resource in NEW.tree.items()}
    members = list(tree[CHASSIS + "/Sensors"]["Members"])
    for n in range(MAX_MEMBERS):
        path = f"{CHASSIS}/Sensors/Extra{n}"
        tree[path] = {"@odata.id": path, "Id": f"Extra{n}", "ReadingType": "Voltage", "Reading": 1}
        members.append({"@odata.id": path})
    tree[CHASSIS + "/Sensors"]["Members"] = members
    odd = next(s for s in sensors_by(NEW, "1U", "Cel").values() if "ReadingType" in s)
    tree[odd["@odata.id"]]["ReadingUnits"] = "[degF]"
    probe = await serve(tree)
    _, series = await probe.get()
    wanted = [m for m in members if m["@odata.id"] not in copied_sensors()]
    reads = sum(
        n for path, n in probe.fake.requests.items() if path.startswith(CHASSIS + "/Sensors/")
    )
    assert reads == MAX_MEMBERS
    skipped = len(wanted) - MAX_MEMBERS + 1  # the rest, and the sensor in unknown units
    assert of(series, "hwcache_collector_unreadable_items") == {"": skipped}
    assert odd["Name"] not in of(series, "hw_redfish_temperature_celsius")
    assert of(series, "hwcache_collector_success") == {"": 1}


def test_every_family_is_documented() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    page = (REPO / "docs" / "collectors" / "redfish.md").read_text(encoding="utf-8")
    names = [f"`hw_redfish_{key}`" for key in GAUGES] + ["`hw_redfish_system_info`"]
    assert [name for name in names if name not in readme or name not in page] == []


async def test_thermal_1_0_fans_are_named_by_fan_name(
    serve: Callable[..., Awaitable[Probe]],
) -> None:
    """Thermal.v1_0_0 (json-schema in DMTF's publications) names a fan ``FanName`` only."""
    tree = {path: dict(resource) for path, resource in OLD.tree.items()}
    thermal = tree[CHASSIS + "/Thermal"]
    fans = [dict(fan) for fan in thermal["Fans"]]
    for fan in fans:
        fan["FanName"] = fan.pop("Name")
    thermal["Fans"] = fans
    probe = await serve(tree)
    _, series = await probe.get()
    assert of(series, "hw_redfish_fan_speed_rpm") == {f["FanName"]: f["Reading"] for f in fans}


@pytest.mark.parametrize(
    ("path", "key", "value"),
    [
        (CHASSIS, "ThermalSubsystem", "not a link"),
        (CHASSIS + "/Sensors", "Members", 5),
        (CHASSIS + "/ThermalSubsystem/ThermalMetrics", "TemperatureReadingsCelsius", 7),
        (CHASSIS + "/ThermalSubsystem/Fans/Bay1", "SpeedPercent", [1, 2]),
        (CHASSIS + "/ThermalSubsystem/Fans/Bay1", "Status", "OK"),
        (CHASSIS + "/Sensors/PS1Out12V", "ReadingType", ["Voltage"]),
        (CHASSIS + "/Sensors/PS1Out12V", "Reading", "12.08"),
        (CHASSIS + "/PowerSubsystem/PowerSupplies/Bay1/Metrics", "InputPowerWatts", 937),
        (CHASSIS + "/EnvironmentMetrics", "PowerWatts", {"DataSourceUri": 3, "Reading": None}),
        ("/redfish/v1/Systems/437XR1138R2/Memory", "Members", [{"@odata.id": 4}, "x"]),
    ],
)
async def test_odd_values_never_fail_the_poll(
    serve: Callable[..., Awaitable[Probe]], path: str, key: str, value: Any
) -> None:
    tree = {p: dict(resource) for p, resource in NEW.tree.items()}
    tree[path][key] = value
    probe = await serve(tree)
    _, series = await probe.get()
    assert of(series, "hwcache_collector_success") == {"": 1}
    assert of(series, "hw_redfish_chassis_health")  # the rest of the chassis is there


async def test_collections_expanded_in_one_request_give_the_same_series(
    serve: Callable[..., Awaitable[Probe]],
) -> None:
    assert NEW.get("/redfish/v1/")["ProtocolFeaturesSupported"]["ExpandQuery"]["Levels"]
    reference = await serve(NEW.tree)
    _, plain = await reference.get()
    expanding = ExpandingRedfish()
    probe = await serve(NEW.tree, expanding)
    _, expanded = await probe.get()
    assert hardware(expanded) == hardware(plain) and len(hardware(plain)) > 50
    assert of(expanded, "hwcache_collector_unreadable_items") == {"": 0}
    assert CHASSIS + "/Sensors" in expanding.expanded
    sensors = [p for p in expanding.requests if p.startswith(CHASSIS + "/Sensors/")]
    assert sensors == []  # no Sensor read on its own
    requests, unexpanded = sum(expanding.requests.values()), sum(reference.fake.requests.values())
    assert requests * 3 < unexpanded, (requests, unexpanded)


async def test_a_refused_expand_reads_the_members_one_by_one(
    serve: Callable[..., Awaitable[Probe]],
) -> None:
    _, plain = await (await serve(NEW.tree)).get()
    refusing = ExpandingRedfish(refuse=True)
    probe = await serve(NEW.tree, refusing)
    _, series = await probe.get()
    assert hardware(series) == hardware(plain)
    assert of(series, "hwcache_collector_unreadable_items") == {"": 0}
    assert refusing.requests[CHASSIS + "/Sensors/CPU1Temp"] == 1


async def test_a_service_without_systems_is_read_by_its_chassis(
    serve: Callable[..., Awaitable[Probe]],
) -> None:
    """Enclosures (DMTF's public-expansion-box, JBOFs) list Chassis and no Systems."""
    tree = {path: dict(resource) for path, resource in NEW.tree.items()}
    del tree["/redfish/v1/"]["Systems"]
    _, series = await (await serve(tree)).get()
    assert of(series, "hwcache_collector_success") == {"": 1}
    assert of(series, "hw_redfish_chassis_health") == {"": health(NEW.get(CHASSIS))}
    assert of(series, "hw_redfish_system_health") == {}
    del tree["/redfish/v1/"]["Chassis"]
    probe = await serve(tree)
    _, series = await probe.get()
    assert of(series, "hwcache_collector_success") == {"": 0}
    stats = await (await probe.client.get("/cache/stats")).json()
    error = stats["targets"]["items"][f"bmc/{probe.target}"]["last_error"]
    assert "the service root lists neither Systems nor Chassis" in error
