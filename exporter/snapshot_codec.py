"""The snapshot format ``hwcache-snapshot/1``: cache entries to JSON and back, validated."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from exporter.cache import MetricCache
from exporter.clock import Instant
from exporter.entry import EntryView, Status
from exporter.families import FamilyError

FORMAT = "hwcache-snapshot/1"
# A snapshot stamped further than this in the future means the clock went backwards.
CLOCK_SKEW = 60.0
# Samples per json.dumps call when writing.
CHUNK = 1000


class SnapshotError(Exception):
    """The snapshot is unusable (corrupt, incompatible or from another context)."""


def _family_head(family: Metric) -> dict[str, Any]:
    return {
        "name": family.name,
        "documentation": family.documentation,
        "type": family.type,
        "unit": family.unit,
    }


def _samples(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    # No timestamps or exemplars: the exporter sets none.
    return [{"name": s.name, "labels": s.labels, "value": s.value} for s in samples]


def encode_family(family: Metric) -> dict[str, Any]:
    """A metric family as JSON-able data."""
    return {**_family_head(family), "samples": _samples(family.samples)}


def decode_family(data: Any) -> Metric:
    """Rebuild a metric family; raise SnapshotError on anything malformed."""
    try:
        name, doc, typ, unit = data["name"], data["documentation"], data["type"], data["unit"]
        if not all(isinstance(v, str) for v in (name, doc, typ, unit)):
            raise SnapshotError(f"family {name!r}: non-string field")
        family = Metric(name, doc, typ, unit)
        if family.name != name:
            raise SnapshotError(f"family {name!r}: name does not end in its unit {unit!r}")
        for sample in data["samples"]:
            labels = sample["labels"]
            if not isinstance(sample["name"], str) or not isinstance(labels, dict):
                raise SnapshotError(f"family {name!r}: malformed sample")
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
                raise SnapshotError(f"family {name!r}: non-string label")
            value = sample["value"]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SnapshotError(f"family {name!r}: non-numeric sample value")
            family.add_sample(sample["name"], labels, float(value))
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"malformed family: {type(exc).__name__}: {exc}") from None
    return family


@dataclass(frozen=True)
class EntryCopy:
    """What the snapshot keeps of one entry, taken on the event loop, encoded elsewhere."""

    name: str
    fields: dict[str, Any]
    families: tuple[Metric, ...]


def _wall(instant: Instant | None) -> float | None:
    return None if instant is None else instant.wall


def capture_entries(
    cache: MetricCache, options: Mapping[str, Mapping[str, str]]
) -> list[EntryCopy]:
    """A copy of every entry with data, times as Unix time: cheap (views are immutable)."""
    return [
        EntryCopy(
            view.name,
            {
                "interval": view.interval,
                "options": dict(options.get(view.name, {})),
                "state": view.state.value,
                "collected_at": _wall(view.collected_at),
                "expires_at": view.expires_at.wall,
                "last_attempt_at": _wall(view.last_attempt_at),
                "duration": view.duration,
                "last_error": view.last_error,
                "consecutive_failures": view.consecutive_failures,
                "refreshes": dict(view.refreshes),
            },
            view.families,
        )
        for view in cache.views()
        if view.state is not Status.PENDING
    ]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _open(value: dict[str, Any]) -> str:
    """A non-empty object as JSON without its closing brace, so members can follow."""
    return _dumps(value)[:-1]


def _document_parts(entries: Sequence[EntryCopy], head: dict[str, Any]) -> Iterator[str]:
    # json.dumps holds the GIL for a whole call: encode in small pieces so the event loop
    # gets it back between them.
    yield _open(head) + ',"collectors":{'
    for i, entry in enumerate(entries):
        yield f'{"," if i else ""}{_dumps(entry.name)}:{_open(entry.fields)},"families":['
        for j, family in enumerate(entry.families):
            yield f'{"," if j else ""}{_open(_family_head(family))},"samples":['
            samples = family.samples
            for start in range(0, len(samples), CHUNK):
                chunk = _dumps(_samples(samples[start : start + CHUNK]))[1:-1]
                yield f",{chunk}" if start else chunk
            yield "]}"
        yield "]}"
    yield "}}"


def encode_document(entries: Sequence[EntryCopy], context: Mapping[str, Any]) -> bytes:
    """The whole snapshot as JSON bytes (run it in a worker thread: it is big)."""
    head = {"format": FORMAT, **context, "written_at": time.time()}
    return "".join(_document_parts(entries, head)).encode()


def parse_document(raw: bytes, context: Mapping[str, Any]) -> dict[str, Any]:
    """Parse and check a snapshot; raise SnapshotError when it must be ignored."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SnapshotError(f"not valid JSON: {exc}") from None
    except RecursionError:  # a tampered file nested thousands deep: ignore it, don't crash
        raise SnapshotError("not valid JSON: nested too deeply") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise SnapshotError(f"format {found!r} is not {FORMAT!r}")
    for key, expected in context.items():
        if doc.get(key) != expected:
            raise SnapshotError(f"written with {key}={doc.get(key)!r}, now {expected!r}")
    if not isinstance(doc.get("collectors"), dict):
        raise SnapshotError("no collectors mapping")
    return doc


@dataclass
class RestoreReport:
    """What a restore did, per collector name."""

    fresh: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)


def _number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SnapshotError(f"{key} is not a finite number")
    return float(value)


@dataclass(frozen=True)
class SavedEntry:
    """One collector's decoded snapshot data, not yet checked or committed."""

    families: tuple[Metric, ...]
    state: Status
    collected_at: Instant | None
    last_attempt_at: Instant | None
    expires_at: Instant
    duration: float | None
    last_error: str | None
    consecutive_failures: int
    refreshes: dict[str, int]

    def stamp(self, view: EntryView) -> EntryView:
        """``view`` with the saved state and times (``MetricCache.commit`` stores the families)."""
        return replace(
            view,
            state=self.state,
            collected_at=self.collected_at,
            last_attempt_at=self.last_attempt_at,
            expires_at=self.expires_at,
            duration=self.duration,
            last_error=self.last_error,
            consecutive_failures=self.consecutive_failures,
            refreshes=dict(self.refreshes),
        )


def parse_entry(
    entry: EntryView, data: Any, options: Mapping[str, str], now: Instant
) -> SavedEntry:
    """Decode ``entry``'s snapshot data; SnapshotError when it is unusable.

    Times are saved as Unix time and placed on this process's monotonic clock through ``now``.
    """
    if not isinstance(data, dict):
        raise SnapshotError("entry is not an object")
    if data.get("options") != dict(options):
        raise SnapshotError("collector options changed")
    try:
        state = Status(data["state"])
    except (KeyError, ValueError):
        raise SnapshotError(f"unknown state {data.get('state')!r}") from None
    if state in (Status.PENDING, Status.STALE):
        raise SnapshotError("state pending")
    collected_at = _number(data, "collected_at")
    attempted = _number(data, "last_attempt_at")
    saved_expiry = _number(data, "expires_at") or 0.0
    if any(t is not None and t > now.wall + CLOCK_SKEW for t in (collected_at, attempted)):
        raise SnapshotError("timestamps in the future (clock went backwards?)")
    if state is Status.OK and collected_at is None:
        raise SnapshotError("state ok without collected_at")
    families = data.get("families", [])
    if not isinstance(families, list):
        raise SnapshotError("families is not a list")
    refreshes = data.get("refreshes", {})
    if not isinstance(refreshes, dict) or not all(
        isinstance(k, str) and type(v) is int and v >= 0 for k, v in refreshes.items()
    ):
        raise SnapshotError("malformed refresh counts")
    last_error, failures = data.get("last_error"), data.get("consecutive_failures", 0)
    # The interval may have changed since: never keep data longer than the current one allows.
    if state is Status.OK and collected_at is not None:
        expires_at = now.at_wall(min(saved_expiry, collected_at + entry.interval))
    elif state is Status.NOT_APPLICABLE and attempted is not None:
        expires_at = now.at_wall(min(saved_expiry, attempted + entry.interval))
    else:
        expires_at = now  # a failed collector is retried at start; its last good data is served
    return SavedEntry(
        families=tuple(decode_family(f) for f in families),
        state=state,
        collected_at=None if collected_at is None else now.at_wall(collected_at),
        last_attempt_at=None if attempted is None else now.at_wall(attempted),
        expires_at=expires_at,
        duration=_number(data, "duration"),
        last_error=last_error if isinstance(last_error, str) else None,
        consecutive_failures=failures if type(failures) is int and failures >= 0 else 0,
        refreshes=refreshes,
    )


async def restore(
    cache: MetricCache,
    doc: Mapping[str, Any],
    options: Mapping[str, Mapping[str, str]],
    now: Instant,
) -> RestoreReport:
    """Restore enabled collectors' entries through a refresh's checks and commit, each whole."""
    # A refused entry stays pending, so the warm-up collects it as on a first start.
    report = RestoreReport()
    for name, data in doc["collectors"].items():
        if name not in cache:
            report.skipped[name] = "collector not enabled"
            continue
        entry = cache.view(name)
        try:
            saved = await asyncio.to_thread(parse_entry, entry, data, options.get(name, {}), now)
        except SnapshotError as exc:
            report.skipped[name] = str(exc)
            continue
        try:
            checked = await cache.check(name, saved.families, restored=True)
            cache.commit(name, checked, saved.stamp)
        except FamilyError as exc:
            report.refused[name] = str(exc)
            continue
        (report.expired if cache.view(name).expired(now) else report.fresh).append(name)
    return report
