"""Basic-auth password checks: recent outcomes cached, bcrypt in a pool shared fairly by sources."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import heapq
import hmac
import ipaddress
import itertools
import logging
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import bcrypt

log = logging.getLogger(__name__)

BCRYPT_MAX_PASSWORD = 72  # bcrypt ignores (bcrypt>=5 rejects) longer passwords
CACHE_SIZE = 1024
CACHE_TTL = 600.0
# bcrypt is CPU-bound on purpose: half the CPUs at most, so a flood of wrong passwords leaves
# the event loop and the collectors a core.
BCRYPT_WORKERS = max(1, min(4, len(os.sched_getaffinity(0)) // 2))
# Checks one client address may have pending (running or waiting); past that its next check is
# refused at once (AuthBusy -> 503) instead of queueing. Concurrent requests with the same
# credentials share one check, so a scraper needs one.
PER_SOURCE = 4
# Checks pending from all addresses together: a bound on memory, and on how long a check can
# wait (one check per busy address before it, taken in turn).
BCRYPT_CAPACITY = 64


class AuthBusy(Exception):
    """This client address, or the pool as a whole, has too many password checks pending."""


def source_of(remote: str | None) -> str:
    """The address password checks are shared out by: an IPv4 address or an IPv6 /64."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return remote or ""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        # One host commonly holds a whole /64: counting its addresses apart would be no bound.
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _digest(user: str, secret: bytes) -> bytes:
    # A user name never contains ':' (Basic auth splits on the first one): unambiguous key.
    return hashlib.sha256(user.encode() + b":" + secret).digest()


class VerifiedCache:
    """Credentials bcrypt checked against a hash, by digest: forgotten ``ttl`` after their last
    use, LRU-bounded. One holds the accepted credentials, one the rejected."""

    def __init__(
        self,
        maxsize: int = CACHE_SIZE,
        ttl: float = CACHE_TTL,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._timer = timer
        # digest -> (user, the hash it was verified against, last use); oldest use first.
        self._entries: OrderedDict[bytes, tuple[str, bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def hit(self, digest: bytes, hashed: bytes) -> bool:
        """True if ``digest`` was verified against ``hashed`` and used within ``ttl``; renews it."""
        entry = self._entries.get(digest)
        if entry is None:
            return False
        now = self._timer()
        if entry[1] != hashed or now - entry[2] > self.ttl:
            del self._entries[digest]
            return False
        self._entries[digest] = (entry[0], hashed, now)
        self._entries.move_to_end(digest)
        self._expire(now)
        return True

    def add(self, digest: bytes, user: str, hashed: bytes) -> None:
        """Remember that ``user``'s credentials with ``digest`` matched ``hashed``."""
        now = self._timer()
        self._entries[digest] = (user, hashed, now)
        self._entries.move_to_end(digest)
        self._expire(now)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)

    def retain(self, users: Mapping[str, bytes]) -> int:
        """Forget entries whose user is gone or has another hash now; return how many remain."""
        self._expire(self._timer())
        for digest, (user, hashed, _) in list(self._entries.items()):
            if users.get(user) != hashed:
                del self._entries[digest]
        return len(self._entries)

    def _expire(self, now: float) -> None:
        while self._entries:
            _, _, used = next(iter(self._entries.values()))
            if now - used <= self.ttl:
                return
            self._entries.popitem(last=False)


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError as exc:  # a hash bcrypt cannot parse; validation at load prevents it
        log.error("bcrypt rejected a configured hash: %s", exc)
        return False


@dataclass
class _Check:
    password: bytes
    hashed: bytes
    source: str
    result: asyncio.Future[bool]


class BcryptPool:
    """bcrypt checks in ``workers`` threads, taken in turn by client address.

    Start-time fair queuing: each check gets a turn number, one past the later of the turn
    being served and its address's previous check; the lowest turn runs next, and an address
    with nothing pending goes before busy ones on a tie. A flood of guesses from one address
    then delays another address's check by the checks already running, instead of filling a
    shared queue. Every address has at most ``per_source`` checks pending and all of them
    together ``capacity``; past that a check is refused at once.
    """

    def __init__(
        self,
        workers: int = BCRYPT_WORKERS,
        per_source: int = PER_SOURCE,
        capacity: int = BCRYPT_CAPACITY,
    ) -> None:
        self.workers = workers
        self.per_source = per_source
        self.capacity = capacity
        self.pending = 0  # running or queued; only touched on the event loop
        self.running = 0
        self.rejected = 0
        self._by_source: Counter[str] = Counter()
        self._last_turn: dict[str, int] = {}  # of each address's latest pending check
        self._turn = 0  # of the check started last
        self._queue: list[tuple[int, bool, int, _Check]] = []  # (turn, busy, arrival, check)
        self._arrivals = itertools.count()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="bcrypt")

    def submit(self, password: bytes, hashed: bytes, source: str = "") -> asyncio.Future[bool]:
        """Queue a check for ``source``; raise AuthBusy at once when it or the pool is full."""
        if self._by_source[source] >= self.per_source or self.pending >= self.capacity:
            self.rejected += 1
            raise AuthBusy(f"{self._by_source[source]} password checks pending from {source}")
        loop = asyncio.get_running_loop()
        check = _Check(password, hashed, source, loop.create_future())
        busy = source in self._last_turn
        turn = max(self._turn, self._last_turn.get(source, 0)) + 1
        self._last_turn[source] = turn
        heapq.heappush(self._queue, (turn, busy, next(self._arrivals), check))
        self.pending += 1
        self._by_source[source] += 1
        self._start(loop)
        return check.result

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        while self.running < self.workers and self._queue:
            self._turn, _, _, check = heapq.heappop(self._queue)
            self.running += 1
            work = loop.run_in_executor(self._executor, _checkpw, check.password, check.hashed)
            work.add_done_callback(functools.partial(self._finished, check, loop))

    def _finished(
        self, check: _Check, loop: asyncio.AbstractEventLoop, work: asyncio.Future[bool]
    ) -> None:
        self.running -= 1
        self.pending -= 1
        self._by_source[check.source] -= 1
        if not self._by_source[check.source]:
            del self._by_source[check.source]
            del self._last_turn[check.source]
        if work.cancelled():
            check.result.cancel()
        elif not check.result.done():
            error = work.exception()
            if error is not None:
                check.result.set_exception(error)
            else:
                check.result.set_result(work.result())
        self._start(loop)


class BasicAuthenticator:
    """User/password against bcrypt hashes: cached successes at once, other checks in ``pool``."""

    def __init__(
        self,
        users: Mapping[str, bytes],
        pool: BcryptPool | None = None,
        verified: VerifiedCache | None = None,
        rejected: VerifiedCache | None = None,
    ) -> None:
        self.users = dict(users)
        self.pool = pool if pool is not None else BcryptPool()
        self.verified = verified if verified is not None else VerifiedCache()
        # Credentials that failed: refused again without bcrypt while the hash is unchanged.
        self.rejected = rejected if rejected is not None else VerifiedCache()
        self.kept = self.verified.retain(self.users)  # verifications still valid for these users
        self.rejected.retain(self.users)
        self.checks = 0  # bcrypt checks started, for tests and debugging
        self._in_flight: dict[bytes, asyncio.Future[bool]] = {}
        self._names = sorted(self.users)
        # Secret (bcrypt salts and digests) yet stable while the users are: picks stand-ins.
        self._stand_in_key = hashlib.sha256(b"\n".join(self.users[n] for n in self._names)).digest()

    @property
    def enabled(self) -> bool:
        """True when the config lists users (then every request needs credentials)."""
        return bool(self.users)

    def cached(self, user: str, password: str) -> bool:
        """True when these credentials were verified recently: no bcrypt, no await."""
        hashed = self.users.get(user)
        return hashed is not None and self.verified.hit(_digest(user, password.encode()), hashed)

    def stand_in(self, user: str) -> bytes:
        """The configured hash an unknown ``user`` is checked against (the same one every time).

        Unknown names then cost what real users cost, in the same proportions, whatever mix of
        bcrypt costs the config has; a name's cost does not vary between attempts either.
        """
        pick = hmac.digest(self._stand_in_key, user.encode(), "sha256")
        return self.users[self._names[int.from_bytes(pick[:8], "big") % len(self._names)]]

    async def verify(self, user: str, password: str, remote: str | None = None) -> bool:
        """True when the credentials match; AuthBusy when ``remote`` has too many checks pending."""
        secret = password.encode()
        digest = _digest(user, secret)
        hashed = self.users.get(user)
        if hashed is not None and self.verified.hit(digest, hashed):
            return True
        if len(secret) > BCRYPT_MAX_PASSWORD or not self._names:
            return False
        checked = hashed if hashed is not None else self.stand_in(user)
        if self.rejected.hit(digest, checked):
            return False  # the same guess again, unknown user or not: no bcrypt
        future = self._in_flight.get(digest)
        if future is None:  # concurrent requests with the same credentials share one check
            future = self.pool.submit(secret, checked, source_of(remote))
            self.checks += 1
            self._in_flight[digest] = future
            future.add_done_callback(lambda _: self._in_flight.pop(digest, None))
            future.add_done_callback(lambda done: _log_check(user, hashed is not None, done))
        ok = await asyncio.shield(future)
        if ok and hashed is not None:
            self.verified.add(digest, user, hashed)
            return True
        self.rejected.add(digest, user, checked)
        return False


def _log_check(user: str, known: bool, done: asyncio.Future[bool]) -> None:
    if log.isEnabledFor(logging.DEBUG) and not done.cancelled() and done.exception() is None:
        result = "accepted" if done.result() and known else "rejected"
        log.debug("password check for user %r: %s%s", user, result, "" if known else " (unknown)")
