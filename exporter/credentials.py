"""Basic-auth password checks: recent successes cached, bcrypt in a bounded pool of its own."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import bcrypt

log = logging.getLogger(__name__)

BCRYPT_MAX_PASSWORD = 72  # bcrypt ignores (bcrypt>=5 rejects) longer passwords
CACHE_SIZE = 1024
CACHE_TTL = 600.0
# bcrypt is CPU-bound on purpose: half the CPUs at most, so a flood of wrong passwords leaves
# the event loop and the collectors a core.
BCRYPT_WORKERS = max(1, min(4, len(os.sched_getaffinity(0)) // 2))
# Checks that may wait for a worker; past that a check is refused at once (AuthBusy -> 503)
# instead of queueing without bound.
BCRYPT_QUEUE = 8


class AuthBusy(Exception):
    """Every bcrypt worker is busy and the queue is full."""


def _digest(user: str, secret: bytes) -> bytes:
    # A user name never contains ':' (Basic auth splits on the first one): unambiguous key.
    return hashlib.sha256(user.encode() + b":" + secret).digest()


class VerifiedCache:
    """Credentials bcrypt accepted, by digest: forgotten ``ttl`` after their last use, LRU-bounded."""

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


class BcryptPool:
    """bcrypt checks in threads of their own: ``workers`` run, ``queue`` wait, the rest refused."""

    def __init__(self, workers: int = BCRYPT_WORKERS, queue: int = BCRYPT_QUEUE) -> None:
        self.workers = workers
        self.capacity = workers + queue
        self.pending = 0  # running or queued; only touched on the event loop
        self.rejected = 0
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="bcrypt")

    def submit(self, password: bytes, hashed: bytes) -> asyncio.Future[bool]:
        """Start a check; raise AuthBusy at once when ``capacity`` checks are pending."""
        if self.pending >= self.capacity:
            self.rejected += 1
            raise AuthBusy(f"{self.pending} password checks in progress")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, _checkpw, password, hashed)
        self.pending += 1
        future.add_done_callback(self._release)
        return future

    def _release(self, _: object) -> None:
        self.pending -= 1


class BasicAuthenticator:
    """User/password against bcrypt hashes: cached successes at once, other checks in ``pool``."""

    def __init__(
        self,
        users: Mapping[str, bytes],
        pool: BcryptPool | None = None,
        verified: VerifiedCache | None = None,
    ) -> None:
        self.users = dict(users)
        self.pool = pool if pool is not None else BcryptPool()
        self.verified = verified if verified is not None else VerifiedCache()
        self.kept = self.verified.retain(self.users)  # verifications still valid for these users
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

    async def verify(self, user: str, password: str) -> bool:
        """True when the credentials match; raises AuthBusy when the bcrypt pool is full."""
        secret = password.encode()
        digest = _digest(user, secret)
        hashed = self.users.get(user)
        if hashed is not None and self.verified.hit(digest, hashed):
            return True
        if len(secret) > BCRYPT_MAX_PASSWORD or not self._names:
            return False
        future = self._in_flight.get(digest)
        if future is None:  # concurrent requests with the same credentials share one check
            future = self.pool.submit(secret, hashed if hashed is not None else self.stand_in(user))
            self.checks += 1
            self._in_flight[digest] = future
            future.add_done_callback(lambda _: self._in_flight.pop(digest, None))
            future.add_done_callback(lambda done: _log_check(user, hashed is not None, done))
        ok = await asyncio.shield(future)
        if ok and hashed is not None:
            self.verified.add(digest, user, hashed)
            return True
        return False


def _log_check(user: str, known: bool, done: asyncio.Future[bool]) -> None:
    if log.isEnabledFor(logging.DEBUG) and not done.cancelled() and done.exception() is None:
        result = "accepted" if done.result() and known else "rejected"
        log.debug("password check for user %r: %s%s", user, result, "" if known else " (unknown)")
