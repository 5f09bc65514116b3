"""What users install: the wheel, non-editable, in a fresh venv outside the checkout.

``pip install .`` once built a wheel without ``exporter/handlers``; every test passed because
they ran the editable checkout. These tests run the installed console script instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from exporter import __version__
from tests.e2e import GOLDEN_ARGS, assert_golden
from tests.support import REPO, Dist, Installed, fake_path, run_exporter

PACKAGES = ("exporter", "collectors")


def clean_env() -> dict[str, str]:
    """The environment minus anything that could put the checkout on ``sys.path``."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    return {**env, "PATH": fake_path()}


def tree_modules() -> set[str]:
    """Every module file of the packages in the checkout, as wheel paths."""
    return {
        path.relative_to(REPO).as_posix()
        for package in PACKAGES
        for path in (REPO / package).rglob("*")
        if path.suffix in {".py", ".typed"} and "__pycache__" not in path.parts
    }


def test_wheel_holds_every_module_of_the_tree(dist: Dist) -> None:
    names = set(zipfile.ZipFile(dist.wheel).namelist())
    assert tree_modules() - names == set()
    assert "exporter/handlers/metrics.py" in names


def test_sdist_holds_what_the_systemd_install_needs(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for folder in ("systemd", "alerts", "compat"):
        tracked = {
            p.relative_to(REPO).as_posix() for p in (REPO / folder).rglob("*") if p.is_file()
        }
        assert tracked and tracked <= names, folder
    assert {"README.md", "LICENSE", "pyproject.toml"} <= names


def test_installed_package_runs_outside_the_checkout(installed: Installed, tmp_path: Path) -> None:
    where = subprocess.run(
        [installed.python, "-c", "import exporter, collectors; print(exporter.__file__)"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(installed.venv)
    for command in ([installed.script], [installed.python, "-m", "exporter"]):
        result = subprocess.run(
            [*command, "--version"], cwd=tmp_path, env=clean_env(),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert (result.returncode, result.stderr) == (0, ""), result
        assert result.stdout.strip() == f"hwcache-exporter {__version__}"


def test_installed_script_end_to_end(installed: Installed, tmp_path: Path) -> None:
    with run_exporter(
        GOLDEN_ARGS,
        tmp_path,
        env={**clean_env(), "PYTHONPATH": ""},  # run_exporter starts from os.environ
        command=[str(installed.script)],
        cwd=tmp_path,
    ) as exporter:
        status, body = exporter.get("/metrics")
        assert status == 200
        assert_golden(body, exporter.logs())
        status, raw = exporter.get("/cache/stats")
        stats = json.loads(raw)
        assert status == 200 and stats["ready"] is True
        assert {name: c["status"] for name, c in stats["collectors"].items()}["dmi"] == "ok"
        before = stats["collectors"]["dmi"]["generation"]
        request = urllib.request.Request(
            exporter.base + "/cache/invalidate?collector=dmi&refresh=now", method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            reply = json.loads(response.read())
            assert response.status == 202
        assert reply["invalidated"] == ["dmi"], reply
        status, raw = exporter.get("/cache/stats")
        assert json.loads(raw)["collectors"]["dmi"]["generation"] > before
