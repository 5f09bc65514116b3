"""/probe end to end: the exporter process polling sushy-tools' Redfish emulator (fake driver)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import bcrypt
from prometheus_client.parser import text_string_to_metric_families

from tests.support import free_port, run_exporter, running

USER, PASSWORD = "admin", "emulator-pw-7"


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on loopback ``port``."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_probe_polls_the_sushy_emulator_with_credentials_from_files(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    (tmp_path / "htpasswd").write_text(f"{USER}:{hashed}\n")
    (tmp_path / "emulator.conf").write_text(
        f"SUSHY_EMULATOR_AUTH_FILE = {str(tmp_path / 'htpasswd')!r}\n"
    )
    (tmp_path / "user").write_text(USER)
    (tmp_path / "pass").write_text(PASSWORD + "\n")
    (tmp_path / "probe.yml").write_text(
        f"""
modules:
  bmc:
    driver: redfish
    scheme: http
    username_file: {tmp_path / "user"}
    password_file: {tmp_path / "pass"}
    targets: ["127.0.0.1"]
"""
    )
    port = free_port()
    emulator = [sys.executable, "-m", "sushy_tools.emulator.main", "--fake"]
    emulator += ["-i", "127.0.0.1", "-p", str(port), "--config", str(tmp_path / "emulator.conf")]
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # its fake driver keeps state in sqlite there
    with (
        running(emulator, tmp_path / "sushy.log", lambda: listening(port), 60, "sushy", env),
        run_exporter(
            ["--collector.disable-defaults", f"--config.file={tmp_path / 'probe.yml'}"], tmp_path
        ) as exporter,
    ):
        status, body = exporter.get(f"/probe?module=bmc&target=127.0.0.1:{port}")
        assert status == 200, body
        text = body.decode()
        samples = {
            (s.name, s.labels.get("sensor") or s.labels.get("fan") or ""): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        assert samples[("hw_redfish_temperature_celsius", "CPU Temp")] == 41
        assert samples[("hw_redfish_fan_speed_rpm", "BaseBoard System Fan")] == 2100
        assert samples[("hw_redfish_system_health", "")] == 0
        assert samples[("hwcache_collector_success", "")] == 1
        status, stats = exporter.get("/cache/stats")
        assert status == 200
        cmdline = Path(f"/proc/{exporter.proc.pid}/cmdline").read_bytes()
        for place in (text, stats.decode(), exporter.logs(), cmdline.decode()):
            assert PASSWORD not in place
