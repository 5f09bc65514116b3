"""Review: an invalidation must not be undone by a refresh that started before it."""

from __future__ import annotations

import asyncio

from tests.doubles import make_cache


async def test_invalidate_during_inflight_refresh_is_not_lost() -> None:
    cache, collectors, clock = make_cache("a", interval=3600.0)
    await cache.warm_up()
    clock.advance(3601)
    gate = collectors["a"].gate = asyncio.Event()
    cache.refresh("a")  # a scheduled refresh starts reading the hardware ...
    await asyncio.sleep(0)
    clock.advance(10)
    cache.invalidate(["a"], refresh_now=False)  # ... operator swaps a disk and invalidates
    gate.set()
    await asyncio.sleep(0.01)  # the pre-invalidation refresh finishes
    collectors["a"].gate = None
    await cache.fresh(["a"], wait=5)  # next scrape after the invalidation
    assert collectors["a"].calls == 3, "data read before the invalidation cached for 1h"


async def test_invalidate_refresh_now_during_inflight_collects_again() -> None:
    cache, collectors, clock = make_cache("a", interval=3600.0)
    await cache.warm_up()
    clock.advance(3601)
    gate = collectors["a"].gate = asyncio.Event()
    cache.refresh("a")
    await asyncio.sleep(0)
    cache.invalidate(["a"], refresh_now=True)  # answered 202 "recollecting now"
    gate.set()
    await asyncio.sleep(0.01)
    collectors["a"].gate = None
    entry = cache.entries["a"]
    if entry.inflight is not None:
        await entry.inflight
    assert collectors["a"].calls == 3, "refresh=now joined a collection started before it"
