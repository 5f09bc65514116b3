"""Fail loudly (never skip) when the shared real-hardware fixtures are missing."""

from __future__ import annotations

import pytest

from tests.support import SHARED_FIXTURES


def pytest_sessionstart(session: pytest.Session) -> None:
    if not (SHARED_FIXTURES / "node_exporter" / "sys").is_dir():
        raise pytest.UsageError(
            f"shared fixtures not found at {SHARED_FIXTURES}; "
            "clone next to shared/ or set HWCACHE_FIXTURES"
        )
