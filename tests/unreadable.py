"""Shared check of a collector's unreadable items as the running exporter reports them."""

from __future__ import annotations

import json

from tests.exposition import key, scrape
from tests.support import Exporter


def assert_unreadable(exporter: Exporter, collector: str, count: int, *reasons: str) -> None:
    """``collector`` succeeded with ``count`` unreadable items: metric, stats and one log line."""
    got = scrape(exporter)
    stats = json.loads(exporter.get("/cache/stats")[1])["collectors"][collector]
    assert got[key("hwcache_collector_success", collector=collector)] == 1
    assert got[key("hwcache_collector_unreadable_items", collector=collector)] == count
    assert (stats["status"], stats["unreadable_items"]) == ("ok", count), stats
    lines = [
        line
        for line in exporter.logs().splitlines()
        if f"collector {collector}: " in line and " unreadable item" in line
    ]
    assert len(lines) == 1, exporter.logs()
    assert f"{count} unreadable item" in lines[0], lines[0]
    for reason in reasons:
        assert reason in lines[0], (reason, lines[0])
