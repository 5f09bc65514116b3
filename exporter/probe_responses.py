"""Encoded /probe bodies per target and content type, served until the target's data changes."""

from __future__ import annotations

from dataclasses import dataclass

from cachetools import LRUCache

from exporter.clock import Instant
from exporter.entry import EntryView

MAX_BYTES = 32 * 2**20  # least recently stored bodies go first past this
ENTRY_OVERHEAD = 300  # key, record and dict slot, roughly


@dataclass(frozen=True)
class StoredProbe:
    """One encoded body and the data generation of the target it was encoded from."""

    generation: int
    body: bytes
    size: int


class ProbeResponses:
    """A body is reused while its target's generation is current and its data unexpired.

    Expiry matters because the body says whether the data is stale: a body encoded before
    the target's interval ran out must not be served after it.
    """

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.store: LRUCache[tuple[str, str], StoredProbe] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda stored: stored.size
        )
        self.hits = 0
        self.misses = 0

    def get(self, view: EntryView, content_type: str, now: Instant) -> bytes | None:
        """The stored body of ``view``'s target in ``content_type``, if still valid."""
        stored = self.store.get((view.name, content_type))
        if stored is None or stored.generation != view.generation or view.expired(now):
            self.misses += 1
            return None
        self.hits += 1
        return stored.body

    def put(self, view: EntryView, content_type: str, body: bytes) -> None:
        """Keep ``body``, encoded from ``view``, for the next scrapes of its target."""
        size = len(body) + len(view.name) + len(content_type) + ENTRY_OVERHEAD
        if size <= self.store.maxsize:
            self.store[(view.name, content_type)] = StoredProbe(view.generation, body, size)
