"""Optional cache of whole /metrics responses, bounded in entries and bytes.

The security middleware (exporter/auth.py) consults it inside its checks, so a hit costs no
extra middleware layer. Requests are canonicalised (order-free query, one of the closed set
of formats) in a worker thread; the result is remembered per raw request line and headers,
and those memories count in the same byte bound as the stored responses.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from aiohttp import web
from cachetools import LRUCache
from prometheus_client.exposition import gzip_accepted
from yarl import URL

from exporter.clock import Clock, system_clock
from exporter.render import Format, negotiate

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Query = tuple[tuple[str, str], ...]
RawKey = tuple[str, str, str]
CacheKey = tuple[str, Query, str, str, int]

VARY = "Accept, Accept-Encoding"
# Per stored item: the cache's dict slots, LRU link and size record (measured: ~135 bytes).
ENTRY_OVERHEAD = 256
# Share of the byte bound the canonical-key memory may use, and its cap.
MEMO_SHARE, MEMO_CAP = 16, 4 * 1024 * 1024


def deep_size(obj: object) -> int:
    """Bytes held by strings, bytes and numbers and the tuples and dicts holding them."""
    size = sys.getsizeof(obj)
    if isinstance(obj, tuple):
        size += sum(deep_size(item) for item in obj)
    elif isinstance(obj, dict):
        size += sum(deep_size(k) + deep_size(v) for k, v in obj.items())
    return size


@dataclass(frozen=True, slots=True)
class Canonical:
    """A /metrics request as the cache and the handler see it."""

    path: str
    query: Query
    fmt: Format
    gzip: bool

    def values(self, name: str) -> list[str]:
        """The values of query parameter ``name`` (in sorted order)."""
        return [value for key, value in self.query if key == name]

    def key(self, generation: int) -> CacheKey:
        """Response-cache key for data generation ``generation``."""
        return self.path, self.query, self.fmt.content_type, "gzip" if self.gzip else "", generation


def canonicalise(url: URL, accept: str, accept_encoding: str) -> Canonical:
    """Sort the query and negotiate format and encoding (runs in a worker thread)."""
    query = tuple(sorted(url.query.items()))
    return Canonical(url.path, query, negotiate(accept), gzip_accepted(accept_encoding))


# Set on the request: its canonical form (by the cache), and the data generation and
# validity the metrics handler rendered.
CANONICAL = web.RequestKey("hwcache_canonical", Canonical)
GENERATION = web.RequestKey("hwcache_generation", int)
VALID_UNTIL = web.RequestKey("hwcache_valid_until", float)


class _Remembered(NamedTuple):
    canonical: Canonical
    size: int


@dataclass(frozen=True)
class CachedResponse:
    """A stored response body and the headers needed to replay it."""

    body: bytes
    content_type: str
    encoding: str
    valid_until: float
    size: int
    headers: dict[str, str]
    stored_at: float


def replay_headers(response: web.Response) -> dict[str, str]:
    """The headers a cached copy of ``response`` is served with."""
    headers = {
        "Content-Type": response.headers.get("Content-Type", ""),
        "Vary": VARY,
        "X-Hwcache-Response": "hit",
    }
    if "Content-Encoding" in response.headers:
        headers["Content-Encoding"] = response.headers["Content-Encoding"]
    return headers


class _BoundedLRU(LRUCache[CacheKey, CachedResponse]):
    """An LRU bounded in total bytes that counts its evictions."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(maxsize=max_bytes, getsizeof=lambda value: value.size)
        self.evictions = 0

    def popitem(self) -> tuple[CacheKey, CachedResponse]:
        self.evictions += 1
        return super().popitem()


class ResponseCache:
    """Whole-response cache keyed by path, canonical query, format, encoding and generation."""

    def __init__(
        self,
        max_entries: int = 1000,
        max_bytes: int = 64 * 1024 * 1024,
        ttl: float = 5.0,
        clock: Clock = system_clock,
        current_generation: Callable[[], int] = lambda: 0,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.clock = clock
        self.current_generation = current_generation
        memo_bytes = min(max_bytes // MEMO_SHARE, MEMO_CAP)
        # Canonicalising costs more than a hit; remembered per raw request line + headers.
        self.memo: LRUCache[RawKey, _Remembered] = LRUCache(memo_bytes, lambda v: v.size)
        self.store = _BoundedLRU(max_bytes - memo_bytes)
        self.hits = 0
        self.misses = 0
        self.expired = 0
        self._generation = current_generation()

    @property
    def bytes(self) -> int:
        """Bytes held: stored responses and remembered canonical keys."""
        return int(self.store.currsize + self.memo.currsize)

    def key(self, request: web.Request, generation: int) -> tuple[RawKey, int]:
        """The request's raw key (request line, Accept, Accept-Encoding) and ``generation``."""
        headers = request.headers
        raw = (request.raw_path, headers.get("Accept", ""), headers.get("Accept-Encoding", ""))
        return raw, generation

    async def canonical(self, request: web.Request) -> Canonical:
        """The request's canonical form: remembered, else computed in a worker thread."""
        raw, _ = self.key(request, 0)
        remembered = self.memo.get(raw)
        if remembered is not None:
            return remembered.canonical
        canonical = await asyncio.to_thread(canonicalise, request.rel_url, raw[1], raw[2])
        held = (raw, canonical.path, canonical.query)
        size = deep_size(held) + sys.getsizeof(canonical) + ENTRY_OVERHEAD
        if size <= self.memo.maxsize:
            self.memo[raw] = _Remembered(canonical, size)
        return canonical

    def _drop_old_generations(self) -> None:
        generation = self.current_generation()
        if generation != self._generation:
            # Entries of an older generation can never be hit again: free them now.
            self.store.clear()
            self._generation = generation

    def get(self, key: tuple[RawKey, int]) -> CachedResponse | None:
        """A still-valid cached response, or ``None`` (also for a request not canonical yet)."""
        remembered = self.memo.get(key[0])
        if remembered is None:
            return None  # fill() canonicalises it off the loop, then looks again
        return self.lookup(remembered.canonical.key(key[1]))

    def lookup(self, key: CacheKey) -> CachedResponse | None:
        """Return a still-valid cached response for a canonical key, or ``None``."""
        self._drop_old_generations()
        cached = self.store.get(key)
        if cached is not None and not cached.stored_at <= self.clock() < cached.valid_until:
            del self.store[key]
            self.expired += 1
            cached = None
        if cached is None:
            self.misses += 1
        else:
            self.hits += 1
        return cached

    def put(self, key: CacheKey, response: web.Response, valid_until: float) -> None:
        """Store a 200 response body (already encoded as the client negotiated)."""
        body = response.body
        if not isinstance(body, bytes):
            return
        now = self.clock()
        if self.ttl > 0:
            valid_until = min(valid_until, now + self.ttl)
        headers = replay_headers(response)
        size = sys.getsizeof(body) + deep_size(key) + deep_size(headers) + ENTRY_OVERHEAD
        if valid_until <= now or size > self.store.maxsize:
            return
        self._drop_old_generations()
        self.store[key] = CachedResponse(
            body,
            headers["Content-Type"],
            response.headers.get("Content-Encoding", ""),
            valid_until,
            size,
            headers,
            now,
        )
        while len(self.store) > self.max_entries:
            self.store.popitem()

    def clear(self) -> None:
        """Drop every stored response."""
        self.store.clear()

    def stats(self) -> dict[str, Any]:
        """Numbers for /cache/stats."""
        return {
            "enabled": True,
            "entries": len(self.store),
            "bytes": self.bytes,
            "key_memo_entries": len(self.memo),
            "key_memo_bytes": self.memo.currsize,
            "max_entries": self.max_entries,
            "max_bytes": self.max_bytes,
            "ttl_seconds": self.ttl,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.store.evictions,
            "expired": self.expired,
        }

    async def fill(
        self, request: web.Request, handler: Handler, key: tuple[RawKey, int]
    ) -> web.StreamResponse:
        """Answer a request ``get`` did not: canonicalise, look again, else call ``handler``."""
        remembered = self.memo.get(key[0])
        if remembered is None:
            canonical = await self.canonical(request)
            cached = self.lookup(canonical.key(self.current_generation()))
            if cached is not None:
                return web.Response(body=cached.body, headers=cached.headers)
        else:
            canonical = remembered.canonical
        request[CANONICAL] = canonical
        response = await handler(request)
        generation = request.get(GENERATION)
        # A body of data that changed while it was rendered is served once, never stored.
        current = generation is not None and generation == self.current_generation()
        if isinstance(response, web.Response) and response.status == 200 and current:
            assert generation is not None
            self.put(canonical.key(generation), response, request[VALID_UNTIL])
            response.headers["X-Hwcache-Response"] = "miss"
        return response
