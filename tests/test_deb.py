"""The Debian package: install, upgrade, remove and purge in a booted Debian 12 (no network).

``make deb`` builds two packages of the checkout (revisions -1 and -2); the README's
"Install with apt" block installs the first in a booted container, the same block
upgrades to the second. The tests run in file order on one container.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter import __version__
from tests.container import (
    MAX_EXPOSURE,
    URL,
    Container,
    booted,
    pristine_root,
    show,
    stats,
    wait_ready,
)
from tests.support import REPO, readme_blocks

UNIT = "hwcache-exporter"
ENV_FILE = f"/etc/default/{UNIT}"
STATE = f"/var/lib/{UNIT}"
VERSIONS = (f"{__version__}-1", f"{__version__}-2")
EDIT = "--collector.cpu.interval=7h"
CPU_INTERVAL = 'hwcache_collector_interval_seconds{collector="cpu"} 25200.0'


def build_deb(version: str, outdir: Path) -> Path:
    """``make deb`` with a version override (gzip: the same package, built faster)."""
    env = {**os.environ, "DEB_COMPRESSION": "gzip"}
    argv = ["make", "-s", "-C", str(REPO), "deb", f"DEB_VERSION={version}", f"DEB_OUTDIR={outdir}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, f"make deb:\n{result.stdout}\n{result.stderr}"
    (deb,) = outdir.glob(f"hwcache-exporter_{version}_*.deb")
    return deb


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """A booted Debian 12 with both packages in /root/v1 and /root/v2, nothing installed."""
    if os.geteuid() != 0:
        pytest.fail("the package test boots a container: run `make test` as root")
    work = tmp_path_factory.mktemp("deb")
    debs = [build_deb(version, work / f"v{n}") for n, version in enumerate(VERSIONS, 1)]
    root = work / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(pristine_root()), str(root)], check=True)
    try:
        for n, deb in enumerate(debs, 1):
            (root / "root" / f"v{n}").mkdir()
            shutil.copy(deb, root / "root" / f"v{n}")
        with booted(root, work / "console.log") as booted_container:
            yield booted_container
    finally:
        shutil.rmtree(root, ignore_errors=True)


def apt_install(container: Container, where: str) -> str:
    """The README's "Install with apt" block, literally, in ``where``; its last line."""
    (block,) = readme_blocks("### Install with apt (Debian package)")
    lines = container.sh(block, cwd=where).stdout.strip().splitlines()
    return lines[-1] if lines else ""


def package_status(container: Container) -> str:
    """dpkg's status and version of the package (empty when dpkg does not know it)."""
    out = container.sh(f"dpkg-query -W -f '${{Status}} ${{Version}}' {UNIT}", check=False)
    return out.stdout.strip()


def exists(container: Container, path: str) -> bool:
    """Whether ``path`` exists in the container (a dangling symlink counts)."""
    return container.sh(f"[ -e {path} ] || [ -L {path} ]", check=False).returncode == 0


def service_processes(container: Container) -> list[str]:
    """PIDs of processes running as the service user."""
    script = (
        f'for p in /proc/[0-9]*; do [ "$(stat -c %U $p 2>/dev/null)" = {UNIT} ] && echo $p;'
        " done; true"
    )
    return container.sh(script).stdout.split()


def invocation_journal(container: Container) -> str:
    """The unit's journal for its current run only."""
    invocation = show(container, "InvocationID")["InvocationID"]
    return container.sh(f"journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID={invocation}").stdout


def test_install_starts_an_enabled_hardened_service(container: Container) -> None:
    assert apt_install(container, "/root/v1") == "active"
    assert package_status(container) == f"install ok installed {VERSIONS[0]}"
    assert container.sh(f"systemctl is-enabled {UNIT}").stdout.strip() == "enabled"
    props = show(container, "Type", "MainPID", "ExecStart", "FragmentPath")
    assert props["Type"] == "notify"
    assert "path=/usr/bin/hwcache-exporter " in props["ExecStart"], props
    assert props["FragmentPath"] == f"/lib/systemd/system/{UNIT}.service"
    assert container.sh(f"stat -c %U /proc/{props['MainPID']}").stdout.strip() == UNIT
    user = container.sh(f"getent passwd {UNIT}").stdout.strip().split(":")
    assert (user[5], user[6]) == (STATE, "/usr/sbin/nologin"), user
    assert int(user[2]) < 1000, user
    assert ENV_FILE in container.sh(f"dpkg-query -W -f '${{Conffiles}}' {UNIT}").stdout
    wait_ready(container)
    body = container.sh(f"curl -sf {URL}/metrics").stdout
    assert re.search(r'^hwcache_collector_success\{collector="cpu"\} 1\.0$', body, re.M), body
    assert f'version="{__version__}"' in body
    assert (
        container.sh("hwcache-exporter --version").stdout.strip()
        == f"hwcache-exporter {__version__}"
    )


def test_installed_unit_keeps_the_repository_hardening(container: Container) -> None:
    installed = container.sh(f"cat /lib/systemd/system/{UNIT}.service").stdout
    repo_unit = (REPO / "systemd" / f"{UNIT}.service").read_text()
    assert installed == repo_unit.replace(
        "ExecStart=/usr/local/bin/hwcache-exporter ", "ExecStart=/usr/bin/hwcache-exporter "
    )
    out = container.sh(f"systemd-analyze security --no-pager {UNIT}.service").stdout
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out)
    assert found, out
    assert float(found.group(1)) <= MAX_EXPOSURE, out
    verify = container.sh(f"systemd-analyze verify {UNIT}.service 2>&1")
    assert verify.stdout == "", verify.stdout


def test_upgrade_keeps_the_edited_env_file_and_the_snapshot(container: Container) -> None:
    container.sh(f"sed -i 's|^ARGS=\"|ARGS=\"{EDIT} |' {ENV_FILE}\nsystemctl restart {UNIT}")
    wait_ready(container)
    assert CPU_INTERVAL in container.sh(f"curl -sf {URL}/metrics").stdout
    before = stats(container)["collectors"]["cpu"]
    assert before["status"] == "ok", before
    old_pid = show(container, "MainPID")["MainPID"]
    assert exists(container, f"{STATE}/snapshot.json")

    assert apt_install(container, "/root/v2") == "active"

    assert package_status(container) == f"install ok installed {VERSIONS[1]}"
    assert EDIT in container.sh(f"grep '^ARGS=' {ENV_FILE}").stdout
    assert container.sh(f"find /etc/default -name '{UNIT}.dpkg-*'").stdout == ""
    assert show(container, "MainPID")["MainPID"] != old_pid, "the upgrade did not restart it"
    wait_ready(container)
    assert "restored cache snapshot" in invocation_journal(container)
    after = stats(container)["collectors"]["cpu"]
    assert after["collected_at"] == before["collected_at"], (before, after)
    assert CPU_INTERVAL in container.sh(f"curl -sf {URL}/metrics").stdout


def test_remove_stops_the_service_and_keeps_user_data(container: Container) -> None:
    container.sh(f"apt-get remove -y -q {UNIT}")
    assert package_status(container) == f"deinstall ok config-files {VERSIONS[1]}"
    assert show(container, "ActiveState")["ActiveState"] == "inactive"
    assert service_processes(container) == []
    assert container.sh(f"curl -s {URL}/-/healthy", check=False).returncode != 0
    assert not exists(container, "/usr/lib/hwcache-exporter")
    assert not exists(container, "/usr/bin/hwcache-exporter")
    assert exists(container, f"{STATE}/snapshot.json")
    assert EDIT in container.sh(f"cat {ENV_FILE}").stdout


def test_purge_deletes_state_config_and_unit_links(container: Container) -> None:
    container.sh(f"apt-get purge -y -q {UNIT}")
    assert package_status(container) in {"", "unknown ok not-installed"}
    for path in (
        STATE,
        ENV_FILE,
        f"/etc/systemd/system/{UNIT}.service",
        f"/etc/systemd/system/multi-user.target.wants/{UNIT}.service",
    ):
        assert not exists(container, path), path
    # Documented: the system user stays (no UID reuse for files it may still own).
    user = container.sh(f"getent passwd {UNIT}").stdout.strip().split(":")
    assert user[6] == "/usr/sbin/nologin", user
