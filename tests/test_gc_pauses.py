"""The garbage-collector settings that keep a 100k-sample cache from stalling the event loop.

Each check runs in a fresh interpreter: ``gc.freeze`` is process-wide, and the test process
must keep collecting normally.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.support import REPO

SCRIPT = """
import asyncio, gc, json, weakref
from collectors.base import CollectorContext
from collectors.synthetic import SyntheticCollector
from exporter import gc_pauses
from exporter.cache import CacheEntry, MetricCache
from exporter.clock import FakeClock

class Node:
    pass

async def main():
    clock = FakeClock()
    ctx = CollectorContext(options={"samples": "5000"})
    cache = MetricCache([CacheEntry("synthetic", SyntheticCollector(ctx), 60.0, 30.0)], clock)
    pauses = gc_pauses.install(cache)
    out = {"threshold": gc.get_threshold()}
    await cache.fresh(["synthetic"], wait=30)
    out["first"] = gc.get_freeze_count()
    for _ in range(3):
        cache.invalidate(["synthetic"], refresh_now=False)
        await cache.fresh(["synthetic"], wait=30)
    out["after_three_more"] = gc.get_freeze_count()
    # A cycle that is alive at a freeze and dies later: only a full pass can free it.
    cycle = Node()
    cycle.me = cycle
    dead = weakref.ref(cycle)
    cache.invalidate(["synthetic"], refresh_now=False)
    del cycle
    out["cycle_freed_before"] = dead() is None
    passes = pauses.full_passes
    hoard = [[i] for i in range(2 * gc.get_freeze_count())]  # the frozen objects outgrow 2x
    cache.invalidate(["synthetic"], refresh_now=False)
    out["cycle_freed_after"] = dead() is None
    out["full_passes"] = pauses.full_passes - passes
    del hoard
    print(json.dumps(out))

asyncio.run(main())
"""


def run_script() -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_cached_samples_are_frozen_freed_when_replaced_and_dead_cycles_thawed() -> None:
    result = run_script()
    assert result["threshold"] == [700, 10, 100]
    first, later = result["first"], result["after_three_more"]
    assert isinstance(first, int) and isinstance(later, int)
    assert first > 5_000  # the samples are out of the collector's sight
    # Replaced families are freed by reference counting, frozen or not.
    assert abs(later - first) < 1_000, (first, later)
    assert result["cycle_freed_before"] is False  # frozen while alive: not collected ...
    assert result["cycle_freed_after"] is True  # ... until a full pass once frozen ones doubled
    assert result["full_passes"] == 1
