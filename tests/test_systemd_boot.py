"""The README's install, run literally in a booted Debian 12 under a real systemd.

A debootstrapped root (cached, copied per run) gets the unpacked sdist. The README's
"Install" block runs in it with the host's network (``systemd-nspawn --pipe``); then the
wheels are built outside with the "Install without network access" block, the container is
booted with no network, and the offline and "Install as a systemd unit" blocks run inside.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from exporter import __version__
from tests.container import (
    MAX_EXPOSURE,
    UNIT,
    URL,
    Container,
    booted,
    pristine_root,
    show,
    stats,
    wait_ready,
)
from tests.support import Dist, readme_blocks

WEB_CONFIG = "/etc/hwcache-exporter/web.yml"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
READY_PROBE = f"""
mkdir -p /etc/systemd/system/{UNIT}.service.d
printf '[Service]\\nExecStartPost=+/usr/bin/curl -sf {URL}/-/healthy\\n' \\
    > /etc/systemd/system/{UNIT}.service.d/test-ready-probe.conf
"""


def run_host(script: str, cwd: Path) -> str:
    """A README block on the host, as a user would paste it."""
    result = subprocess.run(
        ["/bin/sh", "-ec", script], cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"{script}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def host_network_settings() -> list[str]:
    """nspawn options giving the root the host's TLS trust and proxy settings, as on a LAN."""
    bundle = ssl.get_default_verify_paths().cafile or ssl.get_default_verify_paths().openssl_cafile
    options = [f"--bind-ro={Path(bundle).resolve()}:{CA_BUNDLE}", f"--setenv=PIP_CERT={CA_BUNDLE}"]
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        if name in os.environ:
            options.append(f"--setenv={name}={os.environ[name]}")
    return options


def run_in_root(root: Path, script: str, cwd: str) -> str:
    """A README block in the (not booted) root with the host's network."""
    argv = ["systemd-nspawn", "--quiet", "--keep-unit", "--register=no", "--pipe",
            *host_network_settings(), "-D", str(root),
            "--", "/bin/sh", "-ec", f"cd {cwd}\n{script}"]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{script}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def last_line(output: str) -> str:
    """What a block's last command printed (pip prints progress before it)."""
    return output.strip().splitlines()[-1] if output.strip() else ""


def unpack(sdist: Path, into: Path) -> Path:
    """The sdist unpacked as ``tar xzf`` would; returns its top directory."""
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        archive.extractall(into, filter="data")
    return into / top


@pytest.fixture(scope="module")
def container(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """A booted Debian 12 with the exporter installed by the README's commands."""
    if os.geteuid() != 0:
        pytest.fail("the systemd install test boots a container: run `make test` as root")
    work = tmp_path_factory.mktemp("systemd-boot")
    root = work / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(pristine_root()), str(root)], check=True)
    try:
        src = unpack(dist.sdist, root / "root")
        where = f"/root/{src.name}"
        (online,) = readme_blocks("## Install")
        assert last_line(run_in_root(root, online, where)) == f"hwcache-exporter {__version__}"
        shutil.rmtree(root / "opt" / "hwcache-exporter")
        build, offline = readme_blocks("### Install without network access")
        host_src = unpack(dist.sdist, work / "host")
        run_host(build, host_src)
        shutil.copytree(host_src / "wheels", src / "wheels")
        (systemd_block,) = readme_blocks("### Install as a systemd unit")
        with booted(root, work / "console.log") as booted_container:
            out = booted_container.sh(offline, cwd=where)
            assert last_line(out.stdout) == f"hwcache-exporter {__version__}", out
            # Type=notify: ExecStartPost= runs once READY=1 arrived; if the exporter sent it
            # before listening, this probe fails and so does the README's `enable --now`.
            booted_container.sh(READY_PROBE)
            out = booted_container.sh(systemd_block, cwd=where)
            assert last_line(out.stdout) == "active", out
            yield booted_container
    finally:
        shutil.rmtree(root, ignore_errors=True)


def status_code(container: Container, path: str, user: str = "") -> str:
    """The HTTP status of a GET, with optional ``user:password``."""
    auth = f"-u '{user}'" if user else ""
    return container.sh(f"curl -s -o /dev/null -w '%{{http_code}}' {auth} {URL}{path}").stdout


def test_unit_is_active_notified_and_unprivileged(container: Container) -> None:
    props = show(container, "ActiveState", "SubState", "Type", "StatusText", "MainPID", "User")
    assert (props["ActiveState"], props["SubState"], props["Type"]) == (
        "active",
        "running",
        "notify",
    )
    assert props["StatusText"].startswith(("listening on", "ready; collectors:")), props
    owner = container.sh(f"stat -c %U /proc/{props['MainPID']}").stdout.strip()
    assert owner == UNIT
    assert "listening on" in container.journal(UNIT)


def test_metrics_answer_inside_the_container(container: Container) -> None:
    wait_ready(container)
    body = container.sh(f"curl -sf {URL}/metrics").stdout
    assert re.search(r'^hwcache_collector_success\{collector="cpu"\} 1\.0$', body, re.M), body
    assert 'hwcache_build_info{python_version="3.11.' in body
    assert f'version="{__version__}"' in body


def test_running_unit_security_exposure(container: Container) -> None:
    out = container.sh(f"systemd-analyze security --no-pager {UNIT}.service").stdout
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out)
    assert found, out
    assert float(found.group(1)) <= MAX_EXPOSURE, out


def write_web_config(container: Container, user: str, password: str) -> None:
    """A web config with one bcrypt user, readable by the service user only."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    container.sh(
        f"install -d -m 0750 -g {UNIT} /etc/hwcache-exporter\n"
        f"printf 'basic_auth_users:\\n  {user}: %s\\n' '{hashed}' > {WEB_CONFIG}.new\n"
        f"chgrp {UNIT} {WEB_CONFIG}.new && chmod 0640 {WEB_CONFIG}.new\n"
        f"mv {WEB_CONFIG}.new {WEB_CONFIG}"
    )


def test_reload_applies_a_changed_web_config(container: Container) -> None:
    write_web_config(container, "alice", "alice-pw")
    container.sh(
        f"sed -i 's|^ARGS=\"|ARGS=\"--web.config.file={WEB_CONFIG} |' /etc/default/{UNIT}\n"
        f"systemctl restart {UNIT}"
    )
    try:
        wait_ready(container, "-u alice:alice-pw")
        assert status_code(container, "/metrics") == "401"
        assert status_code(container, "/metrics", "alice:alice-pw") == "200"
        before = show(container, "ActiveState", "MainPID", "NRestarts")
        write_web_config(container, "bob", "bob-pw")
        container.sh(f"systemctl reload {UNIT}")
        container.sh(
            "for i in $(seq 80); do\n"
            f"  [ \"$(curl -s -o /dev/null -w '%{{http_code}}' -u bob:bob-pw {URL}/metrics)\" = 200 ]"
            " && exit 0\n  sleep 0.25\ndone\nexit 1"
        )
        assert status_code(container, "/metrics", "alice:alice-pw") == "401"
        after = show(container, "ActiveState", "MainPID", "NRestarts")
        assert after == {**before, "ActiveState": "active"}, "reload restarted the exporter"
    finally:
        container.sh(
            f"sed -i 's|--web.config.file={WEB_CONFIG} ||' /etc/default/{UNIT}\n"
            f"systemctl restart {UNIT}"
        )


def test_restart_serves_the_snapshot_without_collecting(container: Container) -> None:
    wait_ready(container)
    before = stats(container)
    statuses = {n: c["status"] for n, c in before["collectors"].items()}
    assert statuses["cpu"] == "ok" and set(statuses.values()) <= {"ok", "not_applicable"}, before
    container.sh(f"systemctl restart {UNIT}")
    wait_ready(container)
    after = stats(container)
    assert after["collections_started"] == 0, after
    for name, entry in before["collectors"].items():
        restored = after["collectors"][name]
        assert restored["status"] == entry["status"], (name, restored)
        assert restored["collected_at"] == entry["collected_at"], (name, restored)
    invocation = show(container, "InvocationID")["InvocationID"]
    this_run = container.sh(f"journalctl _SYSTEMD_INVOCATION_ID={invocation} -o cat").stdout
    assert "restored cache snapshot" in this_run, this_run


def test_stop_ends_with_success(container: Container) -> None:
    container.sh(f"systemctl stop {UNIT}")
    props = show(container, "Result", "ExecMainStatus", "ActiveState")
    assert props == {"Result": "success", "ExecMainStatus": "0", "ActiveState": "inactive"}
    assert "stopped" in container.journal(UNIT)
