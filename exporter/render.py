"""Exposition of cached families: a closed set of formats, and bodies rendered off the loop."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cachetools import LRUCache
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import ALLOWUTF8, DOTS, UNDERSCORES, VALUES
from prometheus_client.utils import parse_version

from exporter.cache import CacheEntry
from exporter.gzip_chunks import crc_and_size, deflate_chunk, gzip_join

_EOF = b"# EOF\n"
OPENMETRICS = "application/openmetrics-text"
TEXT = "text/plain"
ESCAPINGS = (UNDERSCORES, DOTS, VALUES, ALLOWUTF8)
# Versions prometheus_client can write, per media type; a client's version maps onto these.
VERSIONS = {TEXT: ("0.0.4", "1.0.0"), OPENMETRICS: ("1.0.0", "2.0.0")}


class Families:
    """The ``collect()`` protocol prometheus_client's encoders expect, over a fixed list."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


@dataclass(frozen=True)
class Format:
    """One of the few exposition formats served; ``body_key`` names its rendered bytes."""

    content_type: str
    encoder: Callable[[Families], bytes]
    body_key: str

    @property
    def openmetrics(self) -> bool:
        """Whether the body must end with ``# EOF``."""
        return self.content_type.startswith(OPENMETRICS)


def _fields(content_type: str) -> tuple[str, str, str]:
    """Media type, version and escaping ("" when absent) of a content type."""
    media, *params = content_type.split(";")
    fields = {}
    for param in params:
        name, _, value = param.strip().partition("=")
        fields[name] = value
    return media.strip(), fields.get("version", ""), fields.get("escaping", "")


def _formats() -> dict[tuple[str, str, str], Format]:
    """Every format prometheus_client negotiates, by media type, version and escaping."""
    accepts = ["", OPENMETRICS]
    accepts += [f"{TEXT};version=1.0.0;escaping={escaping}" for escaping in ESCAPINGS]
    accepts += [
        f"{OPENMETRICS};version={version};escaping={escaping}"
        for version in VERSIONS[OPENMETRICS]
        for escaping in ESCAPINGS
    ]
    table = {}
    for accept in accepts:
        encoder, content_type = choose_encoder(accept)
        media, version, escaping = _fields(content_type)
        # Text 0.0.4 and 1.0.0 write the same bytes, as do OpenMetrics with and without
        # an escaping parameter (both default to underscores).
        kind = f"om{version}" if media == OPENMETRICS else "text"
        body_key = f"{kind}|{escaping or UNDERSCORES}"
        table[media, version, escaping] = Format(content_type, encoder, body_key)
    return table


_FORMATS = _formats()
FORMATS = tuple(_FORMATS.values())
PLAIN = _FORMATS[TEXT, "0.0.4", ""]


def _major(version: str) -> int:
    """The major number of a version string (ValueError if it has none)."""
    major = parse_version(version)[0]
    if not isinstance(major, int):
        raise ValueError(f"not a version: {version[:20]!r}")
    return major


def _served_version(media: str, version: str) -> str:
    """The highest version of ``media`` served whose major version is at most the client's."""
    fitting = [v for v in VERSIONS[media] if _major(v) <= _major(version)]
    return fitting[-1] if fitting else VERSIONS[media][0]


def negotiate(accept: str) -> Format:
    """The format prometheus_client would pick for ``accept``, mapped onto the closed set.

    prometheus_client echoes the client's OpenMetrics version; it is replaced by the nearest
    version served (1.0.5 -> 1.0.0, 3.0 -> 2.0.0), so client input never makes a new format.
    """
    try:
        _, content_type = choose_encoder(accept)
        media, version, escaping = _fields(content_type)
        version = _served_version(media, version)
    except (TypeError, ValueError, KeyError):
        # prometheus_client raises on a non-numeric version (``version=abc``): plain text.
        return PLAIN
    return _FORMATS.get((media, version, escaping), PLAIN)


def encode(families: Iterable[Metric], fmt: Format) -> bytes:
    """Encode families without the OpenMetrics ``# EOF`` terminator."""
    body = fmt.encoder(Families(families))
    if fmt.openmetrics and body.endswith(_EOF):
        return body[: -len(_EOF)]
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


# Request renders run here, off the event loop and one at a time: a flood of distinct
# requests can neither put more threads between the loop and the GIL (measured: a second
# render thread raised /-/healthy's p99) nor starve refresh renders (asyncio's default pool).
_WORKERS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")


async def in_worker(work: Callable[[], bytes]) -> bytes:
    """Run ``work`` in a render thread and await its result."""
    return await asyncio.get_running_loop().run_in_executor(_WORKERS, work)


def render_filtered(
    families: Sequence[Metric], fmt: Format, names: frozenset[str], compress: bool
) -> bytes:
    """The body for a ``name[]`` request: only the named samples (runs in a worker)."""
    body = encode(restrict(families, names), fmt)
    body = body + _EOF if fmt.openmetrics else body
    return gzip.compress(body, compresslevel=6) if compress else body


@dataclass
class Piece:
    """One collector's part of a body; what was not rendered yet is filled in by ``compose``."""

    entry: CacheEntry
    generation: int
    families: tuple[Metric, ...]
    plain: bytes | None
    deflated: bytes | None


CrcKey = tuple[str, tuple[tuple[str, int], ...]]


@dataclass
class Body:
    """A full /metrics body: collectors' bytes reused, whatever is missing rendered once.

    Built on the loop from what is cached; ``compose`` may then run in a worker (it touches
    only this object), and ``keep`` stores the new renders back on the loop.
    """

    fmt: Format
    compress: bool
    pieces: list[Piece]
    framework: bytes | None
    framework_families: Sequence[Metric]
    extra: Sequence[Metric]
    crc: tuple[int, int] | None

    @classmethod
    def of(
        cls,
        entries: Sequence[CacheEntry],
        fmt: Format,
        compress: bool,
        framework: bytes | Sequence[Metric],
        extra: Sequence[Metric],
        crcs: LRUCache[CrcKey, tuple[int, int]],
    ) -> Body:
        """Collect the cached parts of a body (on the loop)."""
        key = fmt.body_key
        pieces = [
            Piece(
                e,
                e.generation,
                e.families,
                e.rendered.get(key),
                e.rendered.get(f"{key}|deflate") if compress else None,
            )
            for e in entries
        ]
        known = framework if isinstance(framework, bytes) else None
        families: Sequence[Metric] = () if isinstance(framework, bytes) else framework
        return cls(
            fmt, compress, pieces, known, families, extra, crcs.get(cls.crc_key(fmt, entries))
        )

    @staticmethod
    def crc_key(fmt: Format, entries: Sequence[CacheEntry]) -> CrcKey:
        """Key of the CRC of the collectors' part: format and the entries' generations."""
        return fmt.body_key, tuple((entry.name, entry.generation) for entry in entries)

    @property
    def rendered(self) -> bool:
        """Whether ``compose`` only joins bytes (no render, no large checksum)."""
        pieces = all(p.plain is not None for p in self.pieces)
        if self.compress:
            pieces = pieces and self.crc is not None
            pieces = pieces and all(p.deflated is not None for p in self.pieces)
        return pieces and self.framework is not None and not self.extra

    def compose(self) -> bytes:
        """Render what is missing and join the body, gzipped if asked."""
        fmt = self.fmt
        for piece in self.pieces:
            if piece.plain is None:
                piece.plain = encode(piece.families, fmt)
            if self.compress and piece.deflated is None:
                piece.deflated = deflate_chunk(piece.plain)
        if self.framework is None:
            self.framework = encode(self.framework_families, fmt)
        tail = self.framework + encode(self.extra, fmt) if self.extra else self.framework
        tail = tail + _EOF if fmt.openmetrics else tail
        plains = [p.plain or b"" for p in self.pieces]
        if not self.compress:
            return b"".join([*plains, tail])
        if self.crc is None:
            self.crc = crc_and_size(plains)
        deflated = [p.deflated or b"" for p in self.pieces]
        return gzip_join([tail], [*deflated, deflate_chunk(tail)], self.crc)

    def keep(self, crcs: LRUCache[CrcKey, tuple[int, int]]) -> None:
        """Store new renders on entries whose data did not change meanwhile (on the loop)."""
        key = self.fmt.body_key
        for piece in self.pieces:
            entry = piece.entry
            if entry.generation == piece.generation and piece.plain is not None:
                entry.rendered[key] = piece.plain
                if piece.deflated is not None:
                    entry.rendered[f"{key}|deflate"] = piece.deflated
        if self.crc is not None:
            generations = tuple((p.entry.name, p.generation) for p in self.pieces)
            crcs[key, generations] = self.crc


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
        renders[fmt.body_key] = body
        renders[f"{fmt.body_key}|deflate"] = deflate_chunk(body)
    return renders
