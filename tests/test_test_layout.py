"""The suite's own layout: test modules share helpers only through support modules."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module name ``path`` imports (absolute form)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_module_imports_a_test_module_or_conftest() -> None:
    offenders = {
        f"{path.relative_to(TESTS)} imports {name}"
        for path in TESTS.rglob("*.py")
        for name in imported_modules(path)
        if name.startswith(("tests.test_", "tests.conftest"))
        or (name.startswith("tests.") and ".test_" in name)
    }
    assert not offenders, sorted(offenders)


def test_test_modules_live_at_the_top_of_tests() -> None:
    nested = [p for p in TESTS.rglob("test_*.py") if p.parent != TESTS]
    assert not nested, nested
