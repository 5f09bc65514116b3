"""Golden end-to-end output: the real server on fixture roots and fake tools, diffed.

Regenerate after an intended change with ``HWCACHE_UPDATE_GOLDEN=1 make test`` (or
``pytest tests/test_golden.py``) and review the diff like code.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e import GOLDEN_ARGS, assert_golden
from tests.support import run_exporter


def test_golden_output(tmp_path: Path) -> None:
    with run_exporter(GOLDEN_ARGS, tmp_path) as exporter:
        status, body = exporter.get("/metrics")
        logs = exporter.logs()
    assert status == 200
    assert_golden(body, logs, update=True)
