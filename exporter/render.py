"""Exposition of cached families: content negotiation and per-collector pre-rendered bytes."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from exporter.cache import CacheEntry

_EOF = b"# EOF\n"


class _Families:
    """The ``collect()`` protocol prometheus_client's encoders expect, over a fixed list."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


@dataclass(frozen=True)
class Format:
    """A negotiated exposition format."""

    content_type: str
    encoder: Callable[[_Families], bytes]

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
    body = fmt.encoder(_Families(families))
    if fmt.openmetrics and body.endswith(_EOF):
        return body[: -len(_EOF)]
    return body


def render_entry(entry: CacheEntry, fmt: Format) -> bytes:
    """The entry's families in ``fmt``, rendered once per data change and reused."""
    body = entry.rendered.get(fmt.content_type)
    if body is None:
        body = encode(entry.families, fmt)
        entry.rendered[fmt.content_type] = body
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


def render_body(
    entries: Sequence[CacheEntry],
    framework: Sequence[Metric],
    fmt: Format,
    names: frozenset[str] | None = None,
) -> bytes:
    """The whole /metrics body: cached hardware families, then framework families."""
    if names is not None:
        families = [f for e in entries for f in e.families]
        parts = [encode(restrict([*families, *framework], names), fmt)]
    else:
        parts = [render_entry(entry, fmt) for entry in entries]
        parts.append(encode(framework, fmt))
    if fmt.openmetrics:
        parts.append(_EOF)
    return b"".join(parts)
