"""Rendering: per collector, (generation, format) -> bytes, made off the loop when first asked."""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric

from exporter.entry import EntryView
from exporter.formats import BY_BODY_KEY, PROMETHEUS, Format

log = logging.getLogger(__name__)

EOF = b"# EOF\n"
# gzip once per stored response: level 6 costs a third of level 9's time for 2 % more bytes.
GZIP_LEVEL = 6


class Families:
    """The ``collect()`` protocol prometheus_client's encoders expect, over a fixed list."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def encode(families: Iterable[Metric], fmt: Format) -> bytes:
    """Encode families; OpenMetrics without its ``# EOF`` (added once, at the body's end)."""
    return fmt.encoder(Families(families)).removesuffix(EOF)


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


# Renders run here, off the event loop and one at a time: a flood of distinct requests can
# neither put more threads between the loop and the GIL (measured: a second render thread
# raised /-/healthy's p99) nor starve refreshes (asyncio's default pool).
_WORKERS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")


async def in_worker(work: Callable[[], bytes]) -> bytes:
    """Run ``work`` in the render thread and await its result."""
    return await asyncio.get_running_loop().run_in_executor(_WORKERS, work)


@dataclass
class Part:
    """One collector's part of a body: its bytes in the format asked, once rendered."""

    entry: EntryView  # one generation's view: its ``rendered`` memo is that generation's
    data: bytes | None


@dataclass
class Body:
    """What one response is made of; ``compose`` runs in the render thread."""

    fmt: Format
    parts: list[Part]
    framework: list[Metric]
    compress: bool
    names: frozenset[str] = frozenset()  # a ``name[]`` filter: rendered for this request only

    @property
    def light(self) -> bool:
        """Whether composing only joins rendered bytes and the small framework block."""
        rendered = all(part.data is not None for part in self.parts)
        return rendered and not self.compress and not self.names

    def compose(self) -> bytes:
        """Render the parts not rendered yet, join them with the framework block, gzip once."""
        if self.names:
            families = [f for part in self.parts for f in part.entry.families] + self.framework
            chunks = [encode(restrict(families, self.names), self.fmt)]
        else:
            for part in self.parts:
                if part.data is None:
                    part.data = _render_part(part, self.fmt)
            chunks = [part.data or b"" for part in self.parts]
            chunks.append(encode(self.framework, self.fmt))
        if self.fmt.openmetrics:
            chunks.append(EOF)
        body = b"".join(chunks)
        return gzip.compress(body, GZIP_LEVEL, mtime=0) if self.compress else body


def _render_part(part: Part, fmt: Format) -> bytes:
    """A collector's bytes in ``fmt``; its refresh rendered another format, so this rarely fails."""
    try:
        return encode(part.entry.families, fmt)
    except Exception as exc:
        log.error(
            "collector %s cannot be exposed as %s: %s", part.entry.name, fmt.content_type, exc
        )
        return b""


class Renderer:
    """Holds which formats each collector was asked in, to render its next data in those."""

    def __init__(self) -> None:
        self.asked: dict[str, set[str]] = {}
        # Collector renders by format, at refreshes (worker threads) and when first asked.
        self.renders: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, key: str, renders: int) -> None:
        with self._lock:
            self.renders[key] += renders

    def body(
        self,
        entries: Sequence[EntryView],
        fmt: Format,
        framework: list[Metric],
        compress: bool,
        names: frozenset[str] = frozenset(),
    ) -> Body:
        """A body of the entries' current data (on the loop: reads what is rendered already)."""
        parts = []
        for entry in entries:
            self.asked.setdefault(entry.name, set()).add(fmt.body_key)
            parts.append(Part(entry, entry.rendered.get(fmt.body_key)))
        return Body(fmt, parts, framework, compress, names)

    async def compose(self, body: Body) -> bytes:
        """Compose ``body`` in the render thread; keep new renders with their generation."""
        if body.light:  # a thread hop would cost more than the work (measured: 2.5x per miss)
            return body.compose()
        missing = [part for part in body.parts if part.data is None and not body.names]
        data = await in_worker(body.compose)
        self._count(body.fmt.body_key, len(missing))
        for part in missing:
            if part.data is not None:  # data replaced meanwhile has a new view and memo
                part.entry.rendered[body.fmt.body_key] = part.data
        return data

    def prerender(self, name: str, families: Sequence[Metric]) -> dict[str, bytes]:
        """Render new data in the formats its collector was asked in (raises if unservable).

        Runs in a worker thread with the refresh's checks, so a family that cannot be exposed
        fails its refresh rather than every scrape. Before any scrape: Prometheus' format.
        """
        renders = {}
        for key in sorted(self.asked.pop(name, set()) or {PROMETHEUS.body_key}):
            renders[key] = encode(families, BY_BODY_KEY[key])
            self._count(key, 1)
        return renders
