"""Optional cache of whole /metrics responses, bounded in entries and bytes.

The security middleware (exporter/auth.py) consults it inside its checks, so a hit costs no
extra middleware layer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from cachetools import LRUCache
from prometheus_client.exposition import gzip_accepted

from exporter.clock import Clock, system_clock
from exporter.render import negotiate

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CacheKey = tuple[str, tuple[tuple[str, str], ...], str, str, int]

# Set by the metrics handler on the request: the data generation and validity it rendered.
GENERATION = web.RequestKey("hwcache_generation", int)
VALID_UNTIL = web.RequestKey("hwcache_valid_until", float)


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
        self.store = _BoundedLRU(max_bytes)
        self.hits = 0
        self.misses = 0
        self.expired = 0
        self._generation = current_generation()
        self._keys: LRUCache[
            tuple[str, str, str], tuple[str, tuple[tuple[str, str], ...], str, str]
        ]
        self._keys = LRUCache(maxsize=1024)

    def key(self, request: web.Request, generation: int) -> CacheKey:
        """Order-independent key; format and encoding as the handler would negotiate them."""
        headers = request.headers
        raw = (request.raw_path, headers.get("Accept", ""), headers.get("Accept-Encoding", ""))
        parts = self._keys.get(raw)
        if parts is None:
            if len(self._keys) >= 1024:
                self._keys.clear()  # bounded; rebuilt from the next requests
            # Canonicalising costs more than a hit; remember it per raw request line + headers.
            parts = (
                request.path,
                tuple(sorted(request.query.items())),
                negotiate(raw[1]).content_type,
                "gzip" if gzip_accepted(raw[2]) else "",
            )
            self._keys[raw] = parts
        return (*parts, generation)

    def _drop_old_generations(self) -> None:
        generation = self.current_generation()
        if generation != self._generation:
            # Entries of an older generation can never be hit again: free them now.
            self.store.clear()
            self._generation = generation

    def get(self, key: CacheKey) -> CachedResponse | None:
        """Return a still-valid cached response, or ``None``."""
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
        size = len(body) + len(repr(key[:2]).encode()) + 256
        if valid_until <= now or size > self.max_bytes:
            return
        self._drop_old_generations()
        self.store[key] = CachedResponse(
            body,
            response.headers.get("Content-Type", ""),
            response.headers.get("Content-Encoding", ""),
            valid_until,
            size,
            replay_headers(response),
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
            "bytes": self.store.currsize,
            "max_entries": self.max_entries,
            "max_bytes": self.max_bytes,
            "ttl_seconds": self.ttl,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.store.evictions,
            "expired": self.expired,
        }

    async def fill(
        self, request: web.Request, handler: Handler, key: CacheKey
    ) -> web.StreamResponse:
        """Call ``handler`` for a miss and store its 200 response under ``key``."""
        response = await handler(request)
        generation = request.get(GENERATION)
        if isinstance(response, web.Response) and response.status == 200 and generation is not None:
            self.put((*key[:4], generation), response, request[VALID_UNTIL])
            response.headers["X-Hwcache-Response"] = "miss"
        return response
