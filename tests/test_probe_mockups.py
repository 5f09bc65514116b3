"""/probe end to end: the exporter process polling sushy-static serving DMTF's mockups.

sushy-static (sushy-tools) answers the session login with 204 and no token, so the driver
falls back to HTTP Basic auth; over TLS it serves a throwaway PKI's certificate.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.redfish_mockups import Mockup, of, parse, sensors_by
from tests.support import Exporter, free_port, run_exporter, running
from tests.websec import PKI, make_pki

USER, PASSWORD = "monitor", "static-pw-31"
NEW = Mockup("public-rackmount1")
OLD = Mockup("public-localstorage")
CHASSIS = "/redfish/v1/Chassis/1U"


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on loopback ``port``."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def sushy_static(mockup: Mockup, tmp_path: Path, pki: PKI | None = None) -> Iterator[int]:
    """sushy-static serving ``mockup`` on a free loopback port (TLS with ``pki``'s server)."""
    port = free_port()
    argv = [sys.executable, "-m", "sushy_tools.static.main", "-i", "127.0.0.1", "-p", str(port)]
    argv += ["-m", str(mockup.folder)]
    if pki is not None:
        argv += ["--ssl-certificate", str(pki.server), "--ssl-key", str(pki.server_key)]
    log = tmp_path / f"sushy-static-{mockup.name}-{port}.log"
    with running(argv, log, lambda: listening(port), 60, "sushy-static"):
        yield port


def config(tmp_path: Path, modules: dict[str, str]) -> Path:
    """A probe config with one redfish module per name, each with its extra YAML keys."""
    (tmp_path / "user").write_text(USER)
    (tmp_path / "pass").write_text(PASSWORD + "\n")
    text = "modules:\n"
    for name, extra in modules.items():
        text += f"""  {name}:
    driver: redfish
    username_file: {tmp_path / "user"}
    password_file: {tmp_path / "pass"}
    targets: ["127.0.0.1"]
{extra}"""
    path = tmp_path / "probe.yml"
    path.write_text(text)
    return path


def probe(exporter: Exporter, module: str, port: int) -> dict[tuple[str, str], float]:
    status, body = exporter.get(f"/probe?module={module}&target=127.0.0.1:{port}")
    assert status == 200, body
    return parse(body.decode())


def test_the_newer_models_and_the_fallback_to_thermal_and_power(tmp_path: Path) -> None:
    probe_config = config(tmp_path, {"bmc": "    scheme: http\n"})
    with (
        sushy_static(NEW, tmp_path) as new_port,
        sushy_static(OLD, tmp_path) as old_port,
        run_exporter(
            ["--collector.disable-defaults", f"--config.file={probe_config}"], tmp_path
        ) as exporter,
    ):
        new = probe(exporter, "bmc", new_port)
        assert of(new, "hwcache_collector_success") == {"": 1}
        assert of(new, "hwcache_collector_unreadable_items") == {"": 0}
        temperatures = of(new, "hw_redfish_temperature_celsius")
        assert temperatures == {
            s["Name"]: s["Reading"] for s in sensors_by(NEW, "1U", "Cel").values()
        }
        thermal = NEW.get(CHASSIS + "/Thermal")  # also there, deprecated: not read
        assert not {t["Name"] for t in thermal["Temperatures"]} & set(temperatures)
        fans = NEW.members(CHASSIS + "/ThermalSubsystem/Fans")
        assert of(new, "hw_redfish_fan_speed_rpm") == {
            f["Name"]: f["SpeedPercent"]["SpeedRPM"] for f in fans
        }
        voltages = of(new, "hw_redfish_voltage_volts")
        output = [s for s in sensors_by(NEW, "1U", "V").values() if "Output" in s["Name"]]
        assert output and all(voltages[s["Name"]] == s["Reading"] for s in output)
        environment = NEW.get(CHASSIS + "/EnvironmentMetrics")
        assert of(new, "hw_redfish_power_consumed_watts") == {
            "EnvironmentMetrics": environment["PowerWatts"]["Reading"]
        }
        bay1 = NEW.get(CHASSIS + "/PowerSubsystem/PowerSupplies/Bay1")
        metrics = NEW.get(bay1["Metrics"]["@odata.id"])
        assert of(new, "hw_redfish_power_supply_input_watts") == {
            bay1["Name"]: metrics["InputPowerWatts"]["Reading"]
        }

        old = probe(exporter, "bmc", old_port)
        assert of(old, "hwcache_collector_success") == {"": 1}
        thermal, power = OLD.get(CHASSIS + "/Thermal"), OLD.get(CHASSIS + "/Power")
        assert of(old, "hw_redfish_temperature_celsius") == {
            t["Name"]: t["ReadingCelsius"] for t in thermal["Temperatures"] if "ReadingCelsius" in t
        }
        assert of(old, "hw_redfish_voltage_volts") == {
            v["Name"]: v["ReadingVolts"] for v in power["Voltages"]
        }
        assert of(old, "hw_redfish_power_consumed_watts") == {
            c["Name"]: c["PowerConsumedWatts"] for c in power["PowerControl"]
        }
        assert PASSWORD not in exporter.logs()


def test_https_with_a_ca_file_without_one_and_unverified(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    modules = {
        "trusted": f"    scheme: https\n    ca_file: {pki.ca}\n",
        "strict": "    scheme: https\n    tls_verify: true\n",
        "unverified": "    scheme: https\n    tls_verify: false\n",
    }
    probe_config = config(tmp_path, modules)
    with (
        sushy_static(NEW, tmp_path, pki) as port,
        run_exporter(
            ["--collector.disable-defaults", f"--config.file={probe_config}"], tmp_path
        ) as exporter,
    ):
        sensor = sensors_by(NEW, "1U", "Cel")["CPU1Temp"]
        trusted = probe(exporter, "trusted", port)
        assert of(trusted, "hwcache_collector_success") == {"": 1}
        assert of(trusted, "hw_redfish_temperature_celsius")[sensor["Name"]] == sensor["Reading"]

        strict = probe(exporter, "strict", port)
        assert of(strict, "hwcache_collector_success") == {"": 0}
        assert not any(name.startswith("hw_redfish_") for name, _ in strict)
        status, stats = exporter.get("/cache/stats")
        assert status == 200
        items = json.loads(stats)["targets"]["items"]
        error = items[f"strict/127.0.0.1:{port}"]["last_error"]
        assert f"TLS certificate of 127.0.0.1:{port} not trusted (" in error, error
        assert "ca_file" in error
        assert items[f"trusted/127.0.0.1:{port}"]["last_error"] is None

        unverified = probe(exporter, "unverified", port)
        assert of(unverified, "hwcache_collector_success") == {"": 1}
        assert of(unverified, "hw_redfish_temperature_celsius") == of(
            trusted, "hw_redfish_temperature_celsius"
        )
        assert exporter.get("/-/healthy")[0] == 200 and exporter.proc.poll() is None
