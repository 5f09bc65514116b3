"""/probe with the ipmi driver: the real ipmitool against OpenIPMI's ipmi_sim on loopback UDP."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collectors.base import CollectorContext, CollectorError
from collectors.ipmi_lan import IpmiLanCollector
from collectors.toolkit.runner import CommandRunner
from exporter.probe_config import IpmiLan, ProbeConfigError, Secret, load_probe_config
from exporter.probe_target import parse_target
from tests.ipmi_sim import (
    PASSWORD,
    USER,
    Ipmitool,
    free_udp_port,
    logging_ipmitool,
    simulator,
)
from tests.support import exporter_exit, free_port, run_exporter

WRONG = "not-the-pass-9"


@dataclass
class Bmc:
    """A running simulator's port and the wrapper that logs ipmitool runs."""

    port: int
    ipmitool: Ipmitool

    def runs(self) -> list[str]:
        """Argument lines of every ipmitool run so far."""
        return self.ipmitool.runs()

    def env(self) -> dict[str, str]:
        """An environment whose PATH finds the logging wrapper (not the fake ipmitool)."""
        return self.ipmitool.env()


@contextlib.contextmanager
def bmc_in(tmp_path: Path) -> Iterator[Bmc]:
    """The simulator, and the wrapper counting runs."""
    with simulator(tmp_path) as port:
        yield Bmc(port, logging_ipmitool(tmp_path))


def probe_config(tmp_path: Path, port: int) -> Path:
    (tmp_path / "user").write_text(USER + "\n")
    (tmp_path / "pass").write_text(PASSWORD + "\n")
    path = tmp_path / "probe.yml"
    path.write_text(
        f"""
modules:
  bmc:
    driver: ipmi
    username_file: {tmp_path / "user"}
    password_file: {tmp_path / "pass"}
    cipher_suite: 3
    interval: 10m
    timeout: 30s
    targets: ["127.0.0.1"]
  wrong:
    driver: ipmi
    username: {USER}
    password_env: BMC_WRONG_PASSWORD
    cipher_suite: 3
    privilege: user
    dcmi: false
    targets: ["127.0.0.0/8"]
"""
    )
    return path


def parsed(body: bytes) -> dict[tuple[str, str], float]:
    """(sample name, sensor label) -> value."""
    return {
        (s.name, s.labels.get("sensor", "")): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_probe_reads_the_simulated_bmc_once_per_interval(tmp_path: Path) -> None:
    with (
        bmc_in(tmp_path) as bmc,
        run_exporter(
            ["--collector.disable-defaults", f"--config.file={probe_config(tmp_path, bmc.port)}"],
            tmp_path,
            env={**bmc.env(), "BMC_WRONG_PASSWORD": WRONG},
        ) as exporter,
    ):
        path = f"/probe?module=bmc&target=127.0.0.1:{bmc.port}"
        status, body = exporter.get(path)
        assert status == 200, body
        got = parsed(body)
        assert got[("hw_ipmi_temperature_celsius", "CPU Temp")] == 45
        assert got[("hw_ipmi_temperature_celsius", "Inlet Temp")] == 50
        assert got[("hw_ipmi_fan_speed_rpm", "Fan 1")] == 4800
        assert got[("hw_ipmi_voltage_volts", "Volt 12V")] == 12
        assert got[("hw_ipmi_power_watts", "PSU1 Power")] == 200
        assert got[("hw_ipmi_sensor_state", "CPU Temp")] == 0
        assert got[("hw_ipmi_sensor_state", "Inlet Temp")] == 2  # past upper critical
        assert got[("hw_ipmi_sensor_state", "PSU1 Status")] == 2  # failure detected
        assert got[("hw_ipmi_sel_entries", "")] == 2
        assert got[("hw_ipmi_sel_free_bytes", "")] == 16000 - 2 * 16
        success = [
            s
            for f in text_string_to_metric_families(body.decode())
            for s in f.samples
            if s.name == "hwcache_collector_success"
        ]
        assert [(s.labels, s.value) for s in success] == [
            ({"collector": "ipmi", "module": "bmc", "target": f"127.0.0.1:{bmc.port}"}, 1.0)
        ]
        runs = bmc.runs()
        assert runs and all(f"-H 127.0.0.1 -p {bmc.port} -U {USER} -L USER" in r for r in runs)
        assert any(r.endswith("sdr elist") for r in runs), runs
        assert any(r.endswith("sel info") for r in runs), runs

        # A second scrape within the interval is served from the cache: no ipmitool run.
        status, again = exporter.get(path)
        assert status == 200
        assert parsed(again)[("hw_ipmi_fan_speed_rpm", "Fan 1")] == 4800
        assert bmc.runs() == runs

        status, stats = exporter.get("/cache/stats")
        assert status == 200
        for place in ("\n".join(runs), body.decode(), stats.decode(), exporter.logs()):
            assert PASSWORD not in place


def test_wrong_password_is_a_clear_failure_without_the_password(tmp_path: Path) -> None:
    with (
        bmc_in(tmp_path) as bmc,
        run_exporter(
            ["--collector.disable-defaults", f"--config.file={probe_config(tmp_path, bmc.port)}"],
            tmp_path,
            env={**bmc.env(), "BMC_WRONG_PASSWORD": WRONG},
        ) as exporter,
    ):
        target = f"127.0.0.1:{bmc.port}"
        status, body = exporter.get(f"/probe?module=wrong&target={target}")
        assert status == 200, body
        got = parsed(body)
        assert got[("hwcache_collector_success", "")] == 0
        assert not any(name.startswith("hw_ipmi_") for name, _ in got)
        status, stats = exporter.get("/cache/stats")
        error = json.loads(stats)["targets"]["items"][f"wrong/{target}"]["last_error"]
        assert f"no RMCP+ session with {target}: wrong user name or password" in error
        runs = bmc.runs()
        assert len(runs) == 1 and runs[0].endswith("sdr elist")  # sensors failed: no DCMI, SEL
        for place in (runs[0], body.decode(), stats.decode(), exporter.logs()):
            assert WRONG not in place and PASSWORD not in place


def ipmitool_processes(port: int) -> list[psutil.Process]:
    """Live processes running ipmitool (or its wrapper) against loopback ``port``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        live = proc.info["status"] != psutil.STATUS_ZOMBIE
        if live and "ipmitool" in " ".join(cmdline) and f"-p {port} " in " ".join(cmdline) + " ":
            found.append(proc)
    return found


def test_shutdown_kills_the_ipmitool_of_a_poll_in_flight(tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a BMC that never answers
    silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    wrapper = logging_ipmitool(tmp_path)
    with (
        silent,
        run_exporter(
            ["--collector.disable-defaults", f"--config.file={probe_config(tmp_path, port)}"],
            tmp_path,
            env={**wrapper.env(), "BMC_WRONG_PASSWORD": WRONG},
        ) as exporter,
    ):
        headers = {"X-Prometheus-Scrape-Timeout-Seconds": "1"}
        status, body = exporter.get(f"/probe?module=bmc&target=127.0.0.1:{port}", headers)
        assert status == 200, body  # answered by the deadline; the poll goes on
        deadline = time.monotonic() + 20
        while len(running := ipmitool_processes(port)) < 2:  # the wrapper and ipmitool
            assert time.monotonic() < deadline, "ipmitool never started"
            time.sleep(0.05)
        started = time.monotonic()
        exporter.proc.send_signal(signal.SIGTERM)
        assert exporter.proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 10  # ipmitool alone would retry for 20 s
        gone, alive = psutil.wait_procs(running, timeout=5)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive


def collector(
    tmp_path: Path, port: int, timeout: float = 20, host: str = "127.0.0.1", **settings: Any
) -> IpmiLanCollector:
    """The driver's collector for the simulator, credentials from a file and inline."""
    (tmp_path / "p").write_text(PASSWORD)
    ctx = CollectorContext(runner=CommandRunner(), timeout=timeout)
    target = parse_target(f"{host}:{port}")
    lan = replace(IpmiLan(cipher_suite=3), **settings)
    password = Secret("file", str(tmp_path / "p"))
    return IpmiLanCollector(ctx, target, Secret("literal", USER), password, lan)


async def test_module_switches_leave_out_sel_and_dcmi(tmp_path: Path) -> None:
    with bmc_in(tmp_path) as bmc:
        every = await collector(tmp_path, bmc.port).collect()
        assert "hw_ipmi_sel_entries" in {f.name for f in every}
        runs = len(bmc.runs())  # not counted: this runs the real ipmitool directly
        families = await collector(tmp_path, bmc.port, sel=False, dcmi=False).collect()
        assert "hw_ipmi_sel_entries" not in {f.name for f in families}
        temperatures = next(f for f in families if f.name == "hw_ipmi_temperature_celsius")
        assert {s.labels["sensor"]: s.value for s in temperatures.samples} == {
            "CPU Temp": 45,
            "Inlet Temp": 50,
        }
        assert runs == 0


async def test_a_refused_dcmi_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="collectors.ipmi")
    levels = []
    with simulator(tmp_path) as port:
        lan = collector(tmp_path, port)
        for _ in range(2):
            caplog.clear()
            families = await lan.collect()
            assert "hw_ipmi_temperature_celsius" in {f.name for f in families}
            dcmi = [r for r in caplog.records if "dcmi power reading" in r.getMessage()]
            assert len(dcmi) == 1 and "Insufficient privilege level" in dcmi[0].getMessage()
            levels.append(dcmi[0].levelno)
    assert levels == [logging.WARNING, logging.DEBUG]


async def test_an_ipv6_bmc(tmp_path: Path) -> None:
    with simulator(tmp_path, "::1") as port:
        families = await collector(tmp_path, port, host="[::1]").collect()
    fans = next(f for f in families if f.name == "hw_ipmi_fan_speed_rpm")
    assert [(s.labels["sensor"], s.value) for s in fans.samples] == [("Fan 1", 4800)]


async def test_a_cipher_suite_the_bmc_does_not_offer_is_named_in_the_error(
    tmp_path: Path,
) -> None:
    with (
        simulator(tmp_path) as port,
        pytest.raises(CollectorError, match="a cipher suite the BMC does not offer"),
    ):
        await collector(tmp_path, port, cipher_suite=17).collect()


async def test_no_bmc_answering_fails_within_the_timeout(tmp_path: Path) -> None:
    lan = collector(tmp_path, free_udp_port(), timeout=3)
    with pytest.raises(CollectorError, match=r"did not answer in time|no RMCP\+ session"):
        await lan.collect()
    assert not lan.ctx.runner.live_process_groups


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("privilege: root", "privilege must be one of user, operator, administrator"),
        ("cipher_suite: 18", "cipher_suite must be an IPMI cipher suite id, 0-17"),
        ("cipher_suite: yes", "cipher_suite must be an IPMI cipher suite id"),
        ("sensor_source: ipmi", "sensor_source must be sdr or sensor"),
        ("sel: maybe", "sel must be true or false"),
        ("scheme: https", "key 'scheme' does not apply to driver ipmi"),
        ("tls_verify: false", "key 'tls_verify' does not apply to driver ipmi"),
    ],
)
def test_ipmi_config_errors(tmp_path: Path, extra: str, message: str) -> None:
    (tmp_path / "pass").write_text("pw")
    path = tmp_path / "probe.yml"
    path.write_text(
        f"modules:\n  bmc:\n    driver: ipmi\n    username: u\n"
        f"    password_file: {tmp_path / 'pass'}\n    {extra}\n    targets: ['10.0.0.0/8']\n"
    )
    with pytest.raises(ProbeConfigError, match=message):
        load_probe_config(path)


@pytest.mark.parametrize(
    ("user", "password", "message"),
    [
        (
            "u" * 17,
            "pw",
            "module 'bmc': the username is longer than IPMI's 16 bytes",
        ),
        ("u", "p" * 21, "the password in file .*pass is longer than IPMI's 20 bytes"),
    ],
)
def test_ipmi_credentials_longer_than_ipmi_allows(
    tmp_path: Path, user: str, password: str, message: str
) -> None:
    (tmp_path / "pass").write_text(password)
    path = tmp_path / "probe.yml"
    path.write_text(
        f"modules:\n  bmc:\n    driver: ipmi\n    username: {user}\n"
        f"    password_file: {tmp_path / 'pass'}\n    targets: ['10.0.0.0/8']\n"
    )
    with pytest.raises(ProbeConfigError, match=message) as exc:
        load_probe_config(path)
    assert password not in str(exc.value)


def test_redfish_refuses_ipmi_keys(tmp_path: Path) -> None:
    (tmp_path / "pass").write_text("pw")
    path = tmp_path / "probe.yml"
    path.write_text(
        f"modules:\n  bmc:\n    driver: redfish\n    username: u\n"
        f"    password_file: {tmp_path / 'pass'}\n    cipher_suite: 3\n    targets: ['10.0.0.1']\n"
    )
    with pytest.raises(ProbeConfigError, match="'cipher_suite' does not apply to driver redfish"):
        load_probe_config(path)


def test_an_ipmi_module_without_ipmitool_stops_the_start(tmp_path: Path) -> None:
    path = probe_config(tmp_path, 623)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    listen = f"--web.listen-address=127.0.0.1:{free_port()}"
    args = [listen, "--collector.disable-defaults", f"--config.file={path}"]
    proc = exporter_exit(args, {"PATH": str(empty), "BMC_WRONG_PASSWORD": WRONG})
    assert proc.returncode == 1
    assert "module 'bmc' (driver ipmi) needs ipmitool, which is not installed" in proc.stderr
