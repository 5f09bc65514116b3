"""Credentials under load: cached scrapers are never starved, bcrypt work is bounded, reloads
keep verified users, unknown users cost what real ones do. Real aiohttp servers, real bcrypt."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from exporter.auth import WEB_SECURITY
from exporter.clock import FakeClock
from exporter.credentials import (
    AuthBusy,
    BasicAuthenticator,
    BcryptPool,
    VerifiedCache,
    source_of,
)
from tests.support import run_exporter, wait_for
from tests.websec import HEADERS, HSTS, basic, start

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]

FLOOD_LOOPS = 60
VALID_SCRAPES = 40  # one after the other, all while the flood goes on
UNCACHED_SCRAPERS = 10
# Whatever the pool's size, 100 concurrent wrong passwords must not queue 100 bcrypt checks.
MAX_QUEUED_CHECKS = 16


class BcryptProbe:
    """Wraps the real ``bcrypt.checkpw``: counts calls, calls in flight and the hashes checked."""

    def __init__(self) -> None:
        self.real = bcrypt.checkpw
        self.lock = threading.Lock()
        self.hashes: list[bytes] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.gate = threading.Event()  # checks wait here until it is set
        self.gate.set()

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.gate.wait(timeout=60)
        with self.lock:
            self.hashes.append(hashed)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self.real(password, hashed)
        finally:
            with self.lock:
                self.in_flight -= 1

    def calls(self, hashed: bytes | None = None) -> int:
        """bcrypt checks so far (against ``hashed`` only, if given)."""
        with self.lock:
            return sum(1 for h in self.hashes if hashed is None or h == hashed)

    def reset(self) -> None:
        with self.lock:
            self.hashes.clear()
            self.max_in_flight = self.in_flight


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[BcryptProbe]:
    wrapper = BcryptProbe()
    monkeypatch.setattr(bcrypt, "checkpw", wrapper)
    yield wrapper
    wrapper.gate.set()  # never leave a worker thread waiting


def bcrypt_hash(password: str, cost: int) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()


def write_users(path: Path, users: dict[str, str], extra: str = "") -> Path:
    """A web config with ``users`` (name -> bcrypt hash)."""
    lines = ["basic_auth_users:", *(f"  {user}: {hashed}" for user, hashed in users.items())]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def cost_of(hashed: bytes) -> int:
    return int(hashed.split(b"$")[2])


@contextlib.asynccontextmanager
async def wrong_password_flood(
    client: TestClient[Any, Any], user: str = "prometheus"
) -> AsyncIterator[Counter[int]]:
    """``FLOOD_LOOPS`` clients guessing ``user``'s password (never the same guess twice)."""
    flood: Counter[int] = Counter()
    answered = [0] * FLOOD_LOOPS
    all_answered, stop = asyncio.Event(), asyncio.Event()

    async def guess(loop: int) -> None:
        attempt = 0
        while not stop.is_set():
            wrong = basic(user, f"guess-{loop}-{attempt}")
            async with client.get("/metrics", headers=wrong) as resp:
                flood[resp.status] += 1
            attempt += 1
            answered[loop] += 1
            if all(answered):
                all_answered.set()

    guessers = [asyncio.create_task(guess(n)) for n in range(FLOOD_LOOPS)]
    try:
        async with asyncio.timeout(60):
            await all_answered.wait()  # every loop is flooding
        yield flood
    finally:
        stop.set()
        await asyncio.gather(*guessers)


async def test_cached_scraper_is_not_starved_by_a_wrong_password_flood(
    aiohttp_client: ClientFactory, tmp_path: Path, probe: BcryptProbe
) -> None:
    config = write_users(tmp_path / "web.yml", {"prometheus": bcrypt_hash("scrape", 10)})
    client, *_ = await start(aiohttp_client, config)  # default --web.max-requests=40
    valid = basic("prometheus", "scrape")
    assert (await client.get("/metrics", headers=valid)).status == 200  # now cached
    statuses: Counter[int] = Counter()
    async with wrong_password_flood(client) as flood:
        for _ in range(VALID_SCRAPES):
            async with client.get("/metrics", headers=valid) as resp:
                statuses[resp.status] += 1
    assert statuses == {200: VALID_SCRAPES}, statuses
    assert set(flood) <= {401, 503} and flood[401] > 0, flood
    assert probe.max_in_flight <= 4


async def test_uncached_scrapers_from_another_address_are_served_during_a_flood(
    aiohttp_client: ClientFactory, tmp_path: Path, probe: BcryptProbe
) -> None:
    # Each scraper's first request: its password has never been verified (a fresh start).
    users = {f"prom{i}": bcrypt_hash(f"scrape{i}", 10) for i in range(UNCACHED_SCRAPERS)}
    client, app, *_ = await start(aiohttp_client, write_users(tmp_path / "web.yml", users))
    authenticator = app[WEB_SECURITY].authenticator
    # Another host: Linux routes all of 127.0.0.0/8 to loopback.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    url = client.make_url("/metrics")
    statuses: Counter[int] = Counter()
    async with (
        aiohttp.ClientSession(connector=connector) as scraper,
        wrong_password_flood(client) as flood,
    ):
        for i in range(UNCACHED_SCRAPERS):
            assert not authenticator.cached(f"prom{i}", f"scrape{i}")  # bcrypt it must be
            async with scraper.get(url, headers=basic(f"prom{i}", f"scrape{i}")) as resp:
                statuses[resp.status] += 1
        busy = flood[503]
    assert statuses == {200: UNCACHED_SCRAPERS}, statuses
    # The flood really filled its share: its own checks were refused while it went on.
    assert busy > 0 and flood[401] > 0, flood
    assert probe.max_in_flight <= 4


def test_checks_are_shared_out_by_ipv4_address_and_ipv6_slash_64() -> None:
    assert source_of("192.0.2.7") == "192.0.2.7"
    assert source_of("::ffff:192.0.2.7") == "192.0.2.7"  # a dual-stack socket's IPv4 peer
    assert source_of("2001:db8:1:2::7") == source_of("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert source_of("2001:db8:1:3::7") != source_of("2001:db8:1:2::7")
    assert source_of(None) == "" and source_of("unix-socket") == "unix-socket"


async def test_ready_flood_with_wrong_passwords_is_bounded(
    aiohttp_client: ClientFactory, tmp_path: Path, probe: BcryptProbe
) -> None:
    users = {"prometheus": bcrypt_hash("scrape", 10)}
    client, *_ = await start(aiohttp_client, write_users(tmp_path / "web.yml", users, HEADERS))
    valid = basic("prometheus", "scrape")
    assert (await client.get("/-/ready", headers=valid)).status == 200
    probe.reset()

    async def ready(password: str) -> tuple[int, str | None]:
        async with client.get("/-/ready", headers=basic("prometheus", password)) as resp:
            assert resp.headers["Strict-Transport-Security"] == HSTS  # on 401 and 503 too
            return resp.status, resp.headers.get("Retry-After")

    burst = [asyncio.create_task(ready(f"wrong-{i}")) for i in range(100)]
    # The cached client's probes are answered while the burst is queued or running.
    assert [(await ready("scrape"))[0] for _ in range(5)] == [200] * 5
    answers = Counter(await asyncio.gather(*burst))
    assert probe.calls() <= MAX_QUEUED_CHECKS, answers
    assert set(answers) == {(401, None), (503, "1")}, answers
    assert answers[(503, "1")] >= 100 - MAX_QUEUED_CHECKS
    assert probe.max_in_flight <= 4
    assert (await client.get("/-/ready", headers=valid)).status == 200


async def test_reload_keeps_verified_credentials_of_unchanged_users(
    aiohttp_client: ClientFactory, tmp_path: Path, probe: BcryptProbe
) -> None:
    # Cost 5: the load-time validation checks a cost-4 copy, so the probe tells the two apart.
    alice, bob = bcrypt_hash("alice-pw", 5), bcrypt_hash("bob-pw", 5)
    config = write_users(tmp_path / "web.yml", {"alice": alice, "bob": bob})
    client, app, *_ = await start(aiohttp_client, config)
    for user in ("alice", "bob"):
        assert (await client.get("/metrics", headers=basic(user, f"{user}-pw"))).status == 200
    bob2 = bcrypt_hash("bob-new", 5)
    write_users(config, {"alice": alice, "bob": bob2, "carol": bcrypt_hash("c", 4)})
    before = app[WEB_SECURITY].authenticator
    assert await app[WEB_SECURITY].reload() is True
    assert (await client.get("/metrics", headers=basic("alice", "alice-pw"))).status == 200
    assert probe.calls(alice.encode()) == 1  # same user, same hash: no bcrypt after the reload
    # A changed hash drops that user's cached verification: the old password no longer works.
    assert (await client.get("/metrics", headers=basic("bob", "bob-pw"))).status == 401
    assert (await client.get("/metrics", headers=basic("bob", "bob-new"))).status == 200
    assert probe.calls(bob2.encode()) == 2
    assert app[WEB_SECURITY].authenticator.pool is before.pool  # the bound on bcrypt work too


async def test_unknown_users_are_checked_at_configured_costs(
    aiohttp_client: ClientFactory, tmp_path: Path, probe: BcryptProbe
) -> None:
    users = {"fast": bcrypt_hash("f", 4), "slow": bcrypt_hash("s", 6)}
    client, *_ = await start(aiohttp_client, write_users(tmp_path / "web.yml", users))
    configured = {hashed.encode() for hashed in users.values()}
    stand_ins: dict[str, bytes] = {}
    for i in range(40):
        name = f"ghost{i}"
        probe.reset()
        assert (await client.get("/metrics", headers=basic(name, "f"))).status == 401
        assert probe.calls() == 1
        stand_ins[name] = probe.hashes[0]
    # Each unknown name costs exactly what some configured user costs, and every configured
    # cost occurs: no cost (timing) belongs to real users only.
    assert {cost_of(h) for h in stand_ins.values()} == {4, 6}
    assert set(stand_ins.values()) <= configured
    for name in ("ghost0", "ghost1", "ghost2"):  # stable per name, so repeats don't tell either
        probe.reset()
        assert (await client.get("/metrics", headers=basic(name, "x"))).status == 401
        assert probe.hashes == [stand_ins[name]]


def test_sighup_keeps_verified_credentials_in_a_running_exporter(tmp_path: Path) -> None:
    alice = bcrypt_hash("alice-pw", 4)
    config = write_users(tmp_path / "web.yml", {"alice": alice})
    args = ["--collector.disable-defaults", f"--web.config.file={config}", "--log.level=debug"]
    with run_exporter(args, tmp_path, wait_ready=False) as exporter:
        alice_auth = basic("alice", "alice-pw")
        assert exporter.get("/metrics", alice_auth)[0] == 200
        assert exporter.get("/metrics", alice_auth)[0] == 200
        assert exporter.logs().count("password check for user 'alice'") == 1
        write_users(config, {"alice": alice, "bob": bcrypt_hash("bob-pw", 4)})
        exporter.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "web config reloaded" in exporter.logs())
        assert "verified credentials kept: 1" in exporter.logs()
        assert exporter.get("/metrics", alice_auth)[0] == 200
        assert exporter.logs().count("password check for user 'alice'") == 1


async def test_the_pool_takes_checks_from_each_address_in_turn(probe: BcryptProbe) -> None:
    pool = BcryptPool(workers=1, per_source=4, capacity=64)
    hashes = {source: bcrypt_hash("pw", 4).encode() for source in ("flood", "scraper")}
    probe.gate.clear()  # the first check holds the only worker
    checks = [pool.submit(b"guess", hashes["flood"], "flood") for _ in range(4)]
    with pytest.raises(AuthBusy):  # a fifth check from the same address is refused at once
        pool.submit(b"guess", hashes["flood"], "flood")
    checks.append(pool.submit(b"pw", hashes["scraper"], "scraper"))
    probe.gate.set()
    assert await asyncio.gather(*checks) == [False] * 4 + [True]
    # The scraper's check ran second, not behind the flood's three waiting ones.
    order = ["flood" if h == hashes["flood"] else "scraper" for h in probe.hashes]
    assert order == ["flood", "scraper", "flood", "flood", "flood"]
    assert pool.pending == 0 and pool.rejected == 1


async def test_concurrent_checks_of_the_same_credentials_share_one_bcrypt(
    probe: BcryptProbe,
) -> None:
    authenticator = BasicAuthenticator({"alice": bcrypt_hash("pw", 5).encode()}, BcryptPool(1, 2))
    for password, expected in (("pw", True), ("wrong", False)):
        probe.reset()
        probe.gate.clear()
        checks = [asyncio.create_task(authenticator.verify("alice", password)) for _ in range(20)]
        await asyncio.sleep(0)  # one step each: all twenty now wait for the same check
        probe.gate.set()
        assert await asyncio.gather(*checks) == [expected] * 20
        assert probe.calls() == 1
    assert authenticator.cached("alice", "pw") and not authenticator.cached("alice", "wrong")


def test_verified_cache_forgets_unused_entries_and_stays_bounded() -> None:
    clock = FakeClock()
    cache = VerifiedCache(maxsize=2, ttl=600, timer=clock.monotonic)
    cache.add(b"a", "alice", b"hash-a")
    for _ in range(3):  # in use every 5 minutes: kept however long that goes on
        clock.advance(300)
        assert cache.hit(b"a", b"hash-a")
    assert not cache.hit(b"a", b"another hash")  # the user's hash changed: gone
    assert not cache.hit(b"a", b"hash-a")
    cache.add(b"a", "alice", b"hash-a")
    clock.advance(601)
    assert not cache.hit(b"a", b"hash-a") and len(cache) == 0  # unused for too long
    for digest in (b"1", b"2", b"3"):
        cache.add(digest, "u" + digest.decode(), b"h")
    assert len(cache) == 2 and not cache.hit(b"1", b"h")  # least recently used goes first
    assert cache.retain({"u2": b"h", "u3": b"changed"}) == 1 and cache.hit(b"2", b"h")
