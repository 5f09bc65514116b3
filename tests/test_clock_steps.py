"""A wall clock stepped backwards must not stretch expiry, TTLs or the invalidate limit."""

from __future__ import annotations

from tests.doubles import ClientFactory, make_cache, start

STEP_BACK = 3600.0  # e.g. NTP correcting a clock that was an hour fast


async def test_data_is_refreshed_after_one_interval_despite_clock_step_back() -> None:
    cache, collectors, clock = make_cache("a", interval=60.0)
    await cache.warm_up()
    clock.now -= STEP_BACK
    clock.advance(61)  # more than one interval of real time passes
    await cache.fresh(["a"], wait=5)
    assert collectors["a"].calls == 2, "entry served for interval + clock step"


async def test_response_cache_ttl_holds_despite_clock_step_back(
    aiohttp_client: ClientFactory,
) -> None:
    client, cache, collectors, clock = await start(aiohttp_client, "a", response_cache_ttl=5.0)
    first = await client.get("/metrics")
    assert first.headers["X-Hwcache-Response"] == "miss"
    clock.now -= STEP_BACK
    clock.advance(6)  # past the 5 s TTL
    again = await client.get("/metrics")
    assert again.headers["X-Hwcache-Response"] == "miss", "replayed past its TTL"


async def test_retry_after_never_exceeds_min_interval_after_clock_step_back(
    aiohttp_client: ClientFactory,
) -> None:
    client, cache, collectors, clock = await start(
        aiohttp_client, "a", invalidate_min_interval=60.0
    )
    assert (await client.post("/cache/invalidate?collector=a")).status == 200
    clock.now -= STEP_BACK
    resp = await client.post("/cache/invalidate?collector=a")
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) <= 60, resp.headers["Retry-After"]
