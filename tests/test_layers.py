"""Import direction: ``collectors/`` never imports ``exporter/``; ``exporter/`` only the contract."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import REPO

# What exporter/ may import from collectors/: the contract, the toolkit, and the collectors it
# builds itself (the script collector from its config file, the remote-target drivers).
CONTRACT = ("collectors.base", "collectors.registry", "collectors.toolkit")
BUILT_BY_EXPORTER = ("collectors.script", "collectors.redfish", "collectors.ipmi_lan")


def imported(path: Path) -> set[str]:
    """Every module the file at ``path`` imports."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    return imports_of(path.read_text(encoding="utf-8"), package)


def imports_of(source: str, package: str) -> set[str]:
    """Every module ``source`` (a module of ``package``) imports, relative imports resolved."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = parts[: len(parts) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def within(name: str, packages: tuple[str, ...]) -> bool:
    """Whether module ``name`` is one of ``packages`` or inside one."""
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_collectors_import_nothing_of_the_exporter() -> None:
    offenders = {
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted((REPO / "collectors").rglob("*.py"))
        for name in imported(path)
        if within(name, ("exporter",))
    }
    assert offenders == set()


def test_exporter_imports_only_the_collector_contract() -> None:
    allowed = (*CONTRACT, *BUILT_BY_EXPORTER)
    offenders = {
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted((REPO / "exporter").rglob("*.py"))
        for name in imported(path)
        if within(name, ("collectors",)) and name != "collectors" and not within(name, allowed)
    }
    assert offenders == set()


def test_the_check_sees_every_form_of_import() -> None:
    source = (
        "import exporter.keys\n"
        "from exporter.cache import MetricCache\n"
        "from . import runner\n"
        "from ..base import Collector\n"
        "def late():\n    from exporter import main\n"
    )
    names = imports_of(source, "collectors.toolkit")
    assert {
        "exporter.keys",
        "exporter.cache",
        "collectors.toolkit.runner",
        "collectors.base",
        "exporter.main",
    } <= names
    assert within("exporter.main", ("exporter",))
    assert not within("exporters", ("exporter",))
