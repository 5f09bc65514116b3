"""Optional cache of whole /metrics responses, bounded in entries and bytes.

It wraps the metrics handler only: the handler gives it each response's body, data generation
and validity. A stored response is replayed until the data changes (a new generation) or a
collector's data expires, and at most ``ttl`` seconds when a cap is set.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from cachetools import LRUCache
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.clock import Clock, system_clock

Query = tuple[tuple[str, str], ...]
# Sorted query, negotiated content type, content encoding ("gzip" or "").
CacheKey = tuple[Query, str, str]

VARY = "Accept, Accept-Encoding"
# Per stored item: the cache's dict slots, LRU link and size record (measured: ~135 bytes).
ENTRY_OVERHEAD = 256


def deep_size(obj: object) -> int:
    """Bytes held by strings, bytes and numbers and the tuples and dicts holding them."""
    size = sys.getsizeof(obj)
    if isinstance(obj, tuple):
        size += sum(deep_size(item) for item in obj)
    elif isinstance(obj, dict):
        size += sum(deep_size(k) + deep_size(v) for k, v in obj.items())
    return size


@dataclass(frozen=True)
class Rendered:
    """A /metrics body as the handler made it, with what its cached life depends on."""

    body: bytes
    headers: dict[str, str]
    generation: int  # the data generation the body was built from
    valid_until: float  # when the earliest of its collectors' data expires (monotonic)


@dataclass(frozen=True)
class Stored:
    """A stored response: the body and headers to replay, and until when."""

    body: bytes
    headers: dict[str, str]
    valid_until: float  # monotonic
    size: int


class _BoundedLRU(LRUCache[CacheKey, Stored]):
    """An LRU bounded in total bytes that counts its evictions."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(maxsize=max_bytes, getsizeof=lambda value: value.size)
        self.evictions = 0

    def popitem(self) -> tuple[CacheKey, Stored]:
        self.evictions += 1
        return super().popitem()


class ResponseCache:
    """Whole responses keyed by query, format and encoding, for one data generation at a time."""

    def __init__(
        self,
        max_entries: int = 1000,
        max_bytes: int = 64 * 1024 * 1024,
        ttl: float = 0.0,
        clock: Clock = system_clock,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl  # 0: until the data changes or expires
        self.clock = clock
        self.store = _BoundedLRU(max_bytes)
        self.generation = 0
        self.hits = 0
        self.misses = 0
        self.expired = 0

    @property
    def bytes(self) -> int:
        """Bytes held: bodies, keys, headers and bookkeeping of the stored responses."""
        return int(self.store.currsize)

    def _follow(self, generation: int) -> None:
        if generation != self.generation:
            # Responses of an older generation can never be served again: free them now.
            self.store.clear()
            self.generation = generation

    def get(self, key: CacheKey, generation: int) -> web.Response | None:
        """The stored response for ``key`` if built from ``generation`` and still valid."""
        self._follow(generation)
        stored = self.store.get(key)
        if stored is not None and self.clock.monotonic() >= stored.valid_until:
            del self.store[key]
            self.expired += 1
            stored = None
        if stored is None:
            self.misses += 1
            return None
        self.hits += 1
        return web.Response(body=stored.body, headers=stored.headers)

    def put(self, key: CacheKey, rendered: Rendered, generation: int) -> bool:
        """Store ``rendered`` unless its data changed meanwhile (``generation`` is current)."""
        if rendered.generation != generation:
            return False  # served once, never stored: newer data exists
        now = self.clock.monotonic()
        valid_until = rendered.valid_until
        if self.ttl > 0:
            valid_until = min(valid_until, now + self.ttl)
        headers = {**rendered.headers, "X-Hwcache-Response": "hit"}
        body = rendered.body
        size = sys.getsizeof(body) + deep_size(key) + deep_size(headers) + ENTRY_OVERHEAD
        if valid_until <= now or size > self.store.maxsize:
            return False
        self._follow(generation)
        self.store[key] = Stored(body, headers, valid_until, size)
        while len(self.store) > self.max_entries:
            self.store.popitem()
        return True

    def stats(self) -> dict[str, Any]:
        """Numbers for /cache/stats."""
        return {
            "enabled": True,
            "entries": len(self.store),
            "bytes": self.bytes,
            "max_entries": self.max_entries,
            "max_bytes": self.max_bytes,
            "ttl_seconds": self.ttl,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.store.evictions,
            "expired": self.expired,
        }

    def collect(self) -> Iterator[Metric]:
        """``hwcache_response_cache_*`` families (prometheus_client's collector protocol)."""
        for name, value, doc in (
            ("hits", self.hits, "Scrapes answered from the response cache."),
            ("misses", self.misses, "Scrapes not found in the response cache."),
            ("evictions", self.store.evictions, "Responses evicted to stay in bounds."),
        ):
            yield CounterMetricFamily(f"hwcache_response_cache_{name}", doc, value=value)
        yield GaugeMetricFamily(
            "hwcache_response_cache_bytes",
            "Bytes held by the response cache: bodies, keys and headers of stored responses.",
            value=self.bytes,
        )
