"""A wall-clock step (NTP, an operator) moves no expiry, TTL or rate limit: they are monotonic."""

from __future__ import annotations

import pytest

from tests.doubles import ClientFactory, make_cache, start

HOUR = 3600.0  # e.g. NTP correcting a clock that was an hour off
STEPS = pytest.mark.parametrize("step", [-HOUR, HOUR], ids=["back", "forward"])


@STEPS
async def test_expiry_and_the_forced_refresh_limit_ignore_the_step(step: float) -> None:
    cache, collectors, clock = make_cache("a", interval=60.0)
    await cache.warm_up()
    cache.invalidate(["a"], refresh_now=True)  # a forced refresh: rate-limited for 60 s
    await cache.inflight("a")  # type: ignore[misc]
    collected = cache.view("a").collected_at
    clock.step(step)
    clock.advance(30)
    await cache.fresh(["a"], wait=5)
    assert collectors["a"].calls == 2, "refreshed before its interval"
    assert cache.forced_refresh_wait("a", 60) == 30
    clock.advance(31)
    await cache.fresh(["a"], wait=5)
    assert collectors["a"].calls == 3, "not refreshed after its interval"
    assert cache.forced_refresh_wait("a", 60) == 0
    # Exported times follow the wall clock, step included; ages do not.
    view = cache.view("a")
    assert collected is not None and view.collected_at is not None
    assert view.collected_at.wall - collected.wall == pytest.approx(step + 61)
    assert view.age(clock.now()) == 0 and view.expires_at.wall == clock.wall() + 60


@STEPS
async def test_response_cache_ttl_ignores_the_step(
    aiohttp_client: ClientFactory, step: float
) -> None:
    client, cache, collectors, clock = await start(aiohttp_client, "a", response_cache_ttl=5.0)
    assert (await client.get("/metrics")).headers["X-Hwcache-Response"] == "miss"
    clock.step(step)
    clock.advance(4)
    assert (await client.get("/metrics")).headers["X-Hwcache-Response"] == "hit"
    clock.advance(2)  # past the 5 s TTL
    assert (await client.get("/metrics")).headers["X-Hwcache-Response"] == "miss"


@STEPS
async def test_retry_after_counts_down_whatever_the_step(
    aiohttp_client: ClientFactory, step: float
) -> None:
    client, cache, collectors, clock = await start(
        aiohttp_client, "a", invalidate_min_interval=60.0
    )
    assert (await client.post("/cache/invalidate?collector=a")).status == 200
    clock.step(step)
    clock.advance(20)
    resp = await client.post("/cache/invalidate?collector=a")
    assert resp.status == 429 and resp.headers["Retry-After"] == "40"
    clock.advance(40)
    assert (await client.post("/cache/invalidate?collector=a")).status == 200
