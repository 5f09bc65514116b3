"""Exposition of cached families: content negotiation and per-collector pre-rendered bytes."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cachetools import LRUCache
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from exporter.cache import CacheEntry
from exporter.gzip_chunks import crc_and_size, deflate_chunk, gzip_join

_EOF = b"# EOF\n"


class Families:
    """The ``collect()`` protocol prometheus_client's encoders expect, over a fixed list."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


@dataclass(frozen=True)
class Format:
    """A negotiated exposition format."""

    content_type: str
    encoder: Callable[[Families], bytes]

    @property
    def openmetrics(self) -> bool:
        """Whether the body must end with ``# EOF``."""
        return self.content_type.startswith("application/openmetrics-text")


@functools.lru_cache(maxsize=128)
def negotiate(accept: str) -> Format:
    """Pick the format prometheus_client would for this ``Accept`` header."""
    try:
        encoder, content_type = choose_encoder(accept)
    except (TypeError, ValueError):
        # prometheus_client raises on a non-numeric version (``version=abc``): use plain text.
        encoder, content_type = choose_encoder("")
    return Format(content_type, encoder)


def encode(families: Iterable[Metric], fmt: Format) -> bytes:
    """Encode families without the OpenMetrics ``# EOF`` terminator."""
    body = fmt.encoder(Families(families))
    if fmt.openmetrics and body.endswith(_EOF):
        return body[: -len(_EOF)]
    return body


def render_entry(entry: CacheEntry, fmt: Format, deflated: bool = False) -> bytes:
    """The entry's families in ``fmt`` (or their deflate chunk), built once per data change."""
    key = f"{fmt.content_type}|deflate" if deflated else fmt.content_type
    body = entry.rendered.get(key)
    if body is None:
        body = deflate_chunk(render_entry(entry, fmt)) if deflated else encode(entry.families, fmt)
        entry.rendered[key] = body
    return body


def restrict(families: Iterable[Metric], names: frozenset[str]) -> list[Metric]:
    """Keep only samples whose name is in ``names`` (prometheus_client's ``name[]``)."""
    kept = []
    for family in families:
        samples = [s for s in family.samples if s.name in names]
        if samples:
            copy = Metric(family.name, family.documentation, family.type, family.unit)
            copy.samples = samples
            kept.append(copy)
    return kept


CrcKey = tuple[str, tuple[tuple[str, int], ...]]


def render_body(
    entries: Sequence[CacheEntry],
    framework: bytes,
    fmt: Format,
    compress: bool,
    crcs: LRUCache[CrcKey, tuple[int, int]],
) -> bytes:
    """The /metrics body: each collector's pre-rendered bytes, then ``framework``, maybe gzipped.

    Compressed bodies reuse each collector's deflate chunk and the CRC of their concatenation
    (``crcs``, keyed by format and the entries' generations), so a scrape only compresses
    and checksums the small framework part.
    """
    tail = framework + _EOF if fmt.openmetrics else framework
    if not compress:
        return b"".join([*(render_entry(entry, fmt) for entry in entries), tail])
    key = (fmt.content_type, tuple((entry.name, entry.generation) for entry in entries))
    start = crcs.get(key)
    if start is None:
        start = crc_and_size([render_entry(entry, fmt) for entry in entries])
        crcs[key] = start
    deflated = [render_entry(entry, fmt, deflated=True) for entry in entries]
    return gzip_join([tail], [*deflated, deflate_chunk(tail)], start)


def render_filtered(
    entries: Sequence[CacheEntry], framework: Sequence[Metric], fmt: Format, names: frozenset[str]
) -> bytes:
    """The body for a ``name[]`` request: only the named samples, rendered on the fly."""
    families = [f for e in entries for f in e.families]
    body = encode(restrict([*families, *framework], names), fmt)
    return body + _EOF if fmt.openmetrics else body


# What Prometheus 2.x sends by default; pre-rendering its answer keeps scrapes cheap.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def prerender(families: Sequence[Metric]) -> dict[str, bytes]:
    """Encode new families for plain text and Prometheus' OpenMetrics (raises if invalid).

    Runs in a worker thread after each refresh, so a family that cannot be exposed fails its
    refresh instead of every scrape, and big renders stay off the event loop.
    """
    renders = {}
    for accept in ("", PROMETHEUS_ACCEPT):
        fmt = negotiate(accept)
        body = encode(families, fmt)
        renders[fmt.content_type] = body
        renders[f"{fmt.content_type}|deflate"] = deflate_chunk(body)
    return renders
