"""--config.file modules, target parsing and allow-lists; config errors stop the start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.probe_config import ProbeConfigError, load_probe_config
from exporter.probe_target import parse_allowed, parse_target
from tests.support import exporter_exit, free_port

GOOD = """
modules:
  bmc:
    driver: redfish
    username_env: BMC_USER
    password_file: {pass_file}
    ca_file: {pass_file}
    interval: 10m
    timeout: 1m
    targets: ["10.1.0.0/16", "*.bmc.example.net", "127.0.0.1", "fd00::/8"]
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pass").write_text("pw\n")
    path = tmp_path / "config.yml"
    path.write_text(text.format(pass_file=tmp_path / "pass"))
    return path


def test_a_good_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMC_USER", "monitor")
    bmc = load_probe_config(write(tmp_path, GOOD)).modules["bmc"]
    assert (bmc.interval, bmc.timeout, bmc.scheme, bmc.tls_verify) == (600, 60, "https", True)
    assert (bmc.username.read(), bmc.password.read()) == ("monitor", "pw")
    assert "pw" not in repr(bmc)
    for allowed in ("10.1.2.3", "r1.bmc.example.net", "R1.BMC.example.net.", "127.0.0.1:8443"):
        assert bmc.allows(parse_target(allowed)), allowed
    for refused in ("10.2.0.1", "bmc.example.net", "127.0.0.2", "[fd00::1]:443", "10.1.2.3x"):
        try:
            target = parse_target(refused)
        except ValueError:
            continue
        assert bmc.allows(target) == (refused == "[fd00::1]:443"), refused


@pytest.mark.parametrize(
    ("text", "port", "host"),
    [
        ("[::1]:623", 623, "::1"),
        ("::1", None, "::1"),
        ("Host-1.Example.NET:80", 80, "host-1.example.net"),
    ],
)
def test_targets(text: str, port: int | None, host: str) -> None:
    target = parse_target(text)
    assert (target.host, target.port) == (host, port)


@pytest.mark.parametrize(
    "text", ["", "a b", "[::1", "[::1]x", "h:0", "h:", "-h", "h..x", "x" * 300, "ü.example"]
)
def test_malformed_targets(text: str) -> None:
    with pytest.raises(ValueError):
        parse_target(text)


def test_malformed_allow_list_entry() -> None:
    with pytest.raises(ValueError, match="neither an IP network nor a host name pattern"):
        parse_allowed("http://x/")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("driver: redfish", "driver: snmp"), "driver must be one of redfish"),
        (("interval: 10m", "interval: soon"), "module 'bmc': interval:"),
        (("    targets:", "    tragets:"), "unknown key 'tragets'"),
        (("password_file: ", "password: pw\n    password_file: "), "password_file or password_env"),
        (("username_env: BMC_USER", "username_env: NO_SUCH_VAR"), "NO_SUCH_VAR is empty"),
        (("password_file: {pass_file}", "password_file: /nonexistent"), "No such file"),
        (('"127.0.0.1", ', '"http://x/", '), "neither an IP network"),
        (("modules:", "max_target: 5\nmodules:"), "unknown key 'max_target'"),
    ],
)
def test_config_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: tuple[str, str], message: str
) -> None:
    monkeypatch.setenv("BMC_USER", "monitor")
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(ProbeConfigError, match=message):
        load_probe_config(write(tmp_path, text))


def test_a_config_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("targets:", "targets: []\n    x:"))
    listen = f"--web.listen-address=127.0.0.1:{free_port()}"
    args = [listen, "--collector.disable-defaults", f"--config.file={path}"]
    proc = exporter_exit(args, {"BMC_USER": "monitor", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "--config.file: module 'bmc': unknown key 'x'" in lines[0]


def test_deeply_nested_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "probe.yml"
    path.write_text("modules: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ProbeConfigError) as exc:
        load_probe_config(path)
    assert "nested deeper than" in str(exc.value) and "\n" not in str(exc.value)


def test_duplicate_module_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "probe.yml"
    path.write_text("modules:\n  bmc: {driver: redfish}\n  bmc: {driver: redfish}\n")
    with pytest.raises(ProbeConfigError, match="duplicate key 'bmc'"):
        load_probe_config(path)
