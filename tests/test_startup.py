"""Startup: an error is one line in the log format and an exit within seconds; findings logged."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from collectors.registry import load_all
from collectors.toolkit.runner import CommandRunner
from exporter.cli import build_parser
from exporter.main import startup_settings
from exporter.serve import ListenError, listen_sockets
from tests.support import REPO, exporter_exit, fake_path, free_port, run_exporter

# A hung ipmitool (60 s, killed at the 1m timeout) and a synthetic collector sleeping 60 s.
SLOW = [
    "--collector.disable-defaults",
    "--collector.ipmi",
    "--collector.synthetic",
    "--collector.synthetic.delay=60",
]
# Far below the 61 s the old exit took, and no timing test on a busy machine.
EXIT_WITHIN = 15.0
LOGFMT_LINE = re.compile(r'time=\S+ level=error source=\S+ msg=(".*"|\S+)')


def run_once(
    args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the exporter expecting it to exit by itself; returns the result and its run time."""
    full_env = {**os.environ, "PATH": fake_path(), **(env or {})}
    started = time.monotonic()
    result = exporter_exit(args, full_env, timeout)
    return result, time.monotonic() - started


@pytest.mark.parametrize("form", ["127.0.0.1:{port}", ":{port}"])
def test_bind_failure_exits_at_once_whatever_is_in_flight(tmp_path: Path, form: str) -> None:
    pidfile = tmp_path / "ipmitool.pids"
    env = {"FAKE_IPMITOOL_MODE": "hang", "FAKE_IPMITOOL_PIDFILE": str(pidfile)}
    with socket.create_server(("127.0.0.1", 0)) as busy:
        address = form.format(port=busy.getsockname()[1])
        result, elapsed = run_once([*SLOW, f"--web.listen-address={address}"], env)
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert f"cannot listen on {address}" in line and "address already in use" in line, line
    assert elapsed < EXIT_WITHIN, f"exit took {elapsed:.1f}s"
    assert not pidfile.exists(), "a collector's tool was started before the bind failed"


@pytest.mark.parametrize(
    ("flag", "kind", "expected"),
    [
        ("--path.sysfs", "missing", "no such directory"),
        ("--path.procfs", "file", "not a directory"),
        ("--path.rootfs", "missing", "no such directory"),
    ],
)
def test_bad_root_is_a_startup_error(tmp_path: Path, flag: str, kind: str, expected: str) -> None:
    root = tmp_path / "root"
    if kind == "file":
        root.write_text("")
    result, _ = run_once(["--collector.disable-defaults", "--collector.dmi", f"{flag}={root}"])
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert f"{flag}={root}: {expected}" in line, line


@pytest.mark.parametrize("flag", ["--path.sysfs", "--path.procfs", "--path.rootfs"])
def test_empty_root_is_a_startup_error(flag: str) -> None:
    listen = f"--web.listen-address=127.0.0.1:{free_port()}"
    args = [listen, "--collector.disable-defaults", "--collector.dmi", f"{flag}="]
    result, _ = run_once(args, timeout=10)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert f"{flag}=: empty path (no such directory)" in line, line


@pytest.mark.parametrize(
    ("collector", "flag"),
    [
        ("disks", "--collector.disks.device-exclude=("),
        ("hwmon", "--collector.hwmon.chip-include=("),
        ("filesystems", "--collector.filesystems.fs-types-exclude=["),
        ("smart", "--collector.smart.workers=0"),
        ("ipmi", "--collector.ipmi.source=foo"),
        ("dmi", "--collector.dmi.serials=maybe"),
        ("cpu", "--web.telemetry-path=metrics"),
        ("cpu", "--collector.cpu.timeout=0"),
        ("cpu", "--web.listen-address=127.0.0.1"),
        ("cpu", "--web.listen-address=127.0.0.1:99999"),
        ("cpu", "--web.listen-address=[::1:{port}"),
        ("cpu", "--web.listen-address=::1:{port}"),
        ("cpu", "--web.listen-address=[::1]]:{port}"),
    ],
)
def test_bad_flag_value_exits_as_a_usage_error(collector: str, flag: str) -> None:
    """Not a collector failing at every refresh, nor a bind elsewhere: exit 2 at once."""
    flag = flag.format(port=free_port())
    listen = f"--web.listen-address=127.0.0.1:{free_port()}"
    args = [listen, "--collector.disable-defaults", f"--collector.{collector}", flag]
    result, elapsed = run_once(args, timeout=10)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("hwcache-exporter: ") and line.endswith("; see --help"), line
    assert flag.split("=")[0] in line, line
    if "listen-address" in flag:
        assert "expected host:port" in line or "out of range" in line, line
    assert elapsed < EXIT_WITHIN, f"exit took {elapsed:.1f}s"


@contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """Make ``directory`` refuse new files, for root too (an immutable directory)."""
    if os.geteuid() != 0:
        directory.chmod(0o500)
        yield
        directory.chmod(0o700)
        return
    if shutil.which("chattr") is None:
        pytest.skip("needs chattr to make a directory unwritable for root")
    subprocess.run(["chattr", "+i", str(directory)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_unusable_cache_dir_is_a_startup_error(tmp_path: Path) -> None:
    listen = f"--web.listen-address=127.0.0.1:{free_port()}"
    afile, readonly = tmp_path / "afile", tmp_path / "readonly"
    afile.write_text("")
    readonly.mkdir()
    missing = tmp_path / "a" / "b" / "c"
    cases = [
        (afile, "not a directory"),
        (missing, f"no such directory: {missing.parent}"),
        (readonly, "not writable"),
    ]
    with unwritable(readonly):
        for path, message in cases:
            args = [listen, "--collector.disable-defaults", "--collector.cpu"]
            result, elapsed = run_once([*args, f"--cache.dir={path}"], timeout=10)
            assert result.returncode == 1, (path, result.stderr)
            (line,) = result.stderr.splitlines()
            assert f"--cache.dir={path}: {message}" in line, line
            assert elapsed < EXIT_WITHIN, f"exit took {elapsed:.1f}s"
    assert not (tmp_path / "a").exists(), "missing parents were created"
    assert list(readonly.iterdir()) == []


def fatal_cases(tmp_path: Path, busy_port: int) -> dict[str, tuple[list[str], str]]:
    """Flags for each kind of fatal startup error, and a piece of the expected message."""
    listen = f"--web.listen-address=127.0.0.1:{free_port()}"
    return {
        "missing tool": (
            [listen, "--collector.disable-defaults", "--collector.smart"],
            "'smartctl' is not installed",
        ),
        "bad root": ([listen, f"--path.sysfs={tmp_path / 'nope'}"], "no such directory"),
        "web config": ([listen, f"--web.config.file={tmp_path / 'web.yml'}"], "cannot read"),
        "bind": ([f"--web.listen-address=127.0.0.1:{busy_port}"], "address already in use"),
    }


@pytest.mark.parametrize("case", ["missing tool", "bad root", "web config", "bind"])
@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_fatal_error_follows_the_log_format(tmp_path: Path, case: str, log_format: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        args, message = fatal_cases(tmp_path, busy.getsockname()[1])[case]
        no_tools = {"PATH": str(tmp_path)}
        result, _ = run_once(
            ["--collector.disable-defaults", *args, f"--log.format={log_format}"], no_tools
        )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    if log_format == "json":
        record = json.loads(line)
        assert record["level"] == "error" and message in record["msg"], record
    else:
        assert LOGFMT_LINE.fullmatch(line) and message in line, line


def connects(host: str, port: int) -> bool:
    """Whether a TCP connection to host:port is accepted (a listening socket's backlog)."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not socket.has_dualstack_ipv6(), reason="needs IPv6")
@pytest.mark.parametrize(
    ("form", "reachable", "unreachable"),
    [
        (":{port}", ["127.0.0.1", "::1"], []),
        ("[::1]:{port}", ["::1"], ["127.0.0.1"]),
        ("127.0.0.1:{port}", ["127.0.0.1"], ["::1"]),
        ("localhost:{port}", ["127.0.0.1"], []),
    ],
)
def test_listen_address_forms(form: str, reachable: list[str], unreachable: list[str]) -> None:
    port = free_port()
    sockets = listen_sockets(form.format(port=port))
    try:
        assert [host for host in reachable if not connects(host, port)] == []
        assert [host for host in unreachable if connects(host, port)] == []
    finally:
        for sock in sockets:
            sock.close()
    assert not connects("127.0.0.1", port)


def unassigned_first(addresses: list[str]) -> Callable[..., list[Any]]:
    """A ``getaddrinfo`` resolving any name to ``addresses`` (in that order)."""

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        family = {4: socket.AF_INET, 6: socket.AF_INET6}
        return [
            (family[ipaddress.ip_address(a).version], socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return resolve


def test_host_name_skips_addresses_this_host_lacks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Like localhost with IPv6 disabled: ::1 cannot be assigned, 127.0.0.1 can."""
    port = free_port()
    # Documentation prefixes: never assigned to this host (bind fails with EADDRNOTAVAIL).
    monkeypatch.setattr(socket, "getaddrinfo", unassigned_first(["192.0.2.1", "127.0.0.1"]))
    sockets = listen_sockets(f"exporter.test:{port}")
    try:
        assert [s.getsockname()[:2] for s in sockets] == [("127.0.0.1", port)]
        assert connects("127.0.0.1", port)
    finally:
        for sock in sockets:
            sock.close()
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"cannot listen on exporter.test:{port} (192.0.2.1:{port})" in warning, warning
    monkeypatch.setattr(socket, "getaddrinfo", unassigned_first(["192.0.2.1", "198.51.100.1"]))
    with pytest.raises(ListenError, match="cannot assign requested address"):
        listen_sockets(f"exporter.test:{port}")


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
)
def test_localhost_listens_when_ipv6_is_disabled(tmp_path: Path) -> None:
    """Debian's /etc/hosts names ::1 localhost too; node_exporter binds 127.0.0.1 there."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n")
    code = (
        "import socket, sys; from exporter.serve import listen_sockets; "
        "print([s.getsockname()[0] for s in listen_sockets(sys.argv[1])])"
    )
    script = (
        f"mount --bind {hosts} /etc/hosts && ip link set lo up && sysctl -qw "
        "net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.lo.disable_ipv6=1 && "
        f'exec {sys.executable} -c "{code}" localhost:{free_port()}'
    )
    result = subprocess.run(
        ["unshare", "-m", "-n", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['127.0.0.1']", result.stdout + result.stderr
    assert "cannot assign requested address" in result.stderr, result.stderr


def test_skipped_collectors_are_in_the_settings(tmp_path: Path) -> None:
    registry = load_all()
    args = build_parser(registry).parse_args(["--no-collector.gpu"])
    settings = startup_settings(args, registry, CommandRunner(env={"PATH": str(tmp_path)}))
    assert settings.skipped == (
        ("ipmi", "ipmitool is not installed"),
        ("nvme", "nvme is not installed"),
        ("smart", "smartctl is not installed"),
    )
    names = [c.name for c in settings.collectors]
    assert "smart" not in names and "gpu" not in names and "dmi" in names


NOT_APPLICABLE = ("disks", "dmi", "edac", "hwmon", "mdraid")
SKIPPED = {"gpu": "nvidia-smi", "ipmi": "ipmitool", "nvme": "nvme", "smart": "smartctl"}


def lines_with(log: str, text: str) -> list[str]:
    return [line for line in log.splitlines() if text in line]


def test_startup_logs_what_is_not_there(tmp_path: Path) -> None:
    """Empty roots and no tools: one info line per skipped or not-applicable collector, once."""
    root, tools = tmp_path / "root", tmp_path / "bin"
    root.mkdir()
    tools.mkdir()
    roots = [f"--path.{name}={root}" for name in ("procfs", "sysfs", "rootfs")]
    # The psutil-based collectors read procfs files too; on an empty root they fail (not tested).
    quiet = [f"--no-collector.{n}" for n in ("cpu", "filesystems", "memory", "network", "system")]
    with run_exporter([*roots, *quiet], tmp_path, env={"PATH": str(tools)}) as exporter:
        for name, tool in SKIPPED.items():
            assert lines_with(exporter.logs(), f"collector {name} skipped: {tool} is not installed")
        for name in NOT_APPLICABLE:
            (line,) = lines_with(exporter.logs(), f"collector {name}: not_applicable: ")
            assert "level=info" in line and str(root) in line, line
        # A second "not applicable" result is not logged again.
        request = urllib.request.Request(
            f"{exporter.base}/cache/invalidate?collector=dmi&refresh=now", method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
        deadline = time.monotonic() + 30
        while dmi_refreshes(exporter.base) < 2:
            assert time.monotonic() < deadline, "the forced dmi refresh never finished"
            time.sleep(0.05)
        assert len(lines_with(exporter.logs(), "collector dmi: not_applicable: ")) == 1


def dmi_refreshes(base: str) -> int:
    with urllib.request.urlopen(f"{base}/cache/stats", timeout=10) as response:
        stats = json.load(response)
    return int(stats["collectors"]["dmi"]["refreshes"].get("not_applicable", 0))
