"""Session fixtures: the artifacts users install, built once per test run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO, Dist, Installed


def run(argv: list[str], cwd: Path, timeout: float = 600) -> None:
    """Run a build/install step; on failure show its output."""
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """Build sdist and wheel the way a release would (isolated build environment)."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], cwd=out)
    (sdist,) = out.glob("hwcache_exporter-*.tar.gz")
    (wheel,) = out.glob("hwcache_exporter-*.whl")
    return Dist(sdist, wheel)


@pytest.fixture(scope="session")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """``python3 -m venv`` + ``pip install <wheel>`` in a directory outside the checkout."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    python3 = shutil.which("python3") or sys.executable
    run([python3, "-m", "venv", str(venv)], cwd=venv.parent)
    run([str(venv / "bin" / "pip"), "install", "--quiet", str(dist.wheel)], cwd=venv.parent)
    yield Installed(venv, venv / "bin" / "python", venv / "bin" / "hwcache-exporter")
