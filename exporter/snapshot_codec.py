"""The snapshot format ``hwcache-snapshot/1``: cache entries to JSON and back, validated."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric

from exporter.cache import CacheEntry, MetricCache, State

FORMAT = "hwcache-snapshot/1"
# A snapshot stamped further than this in the future means the clock went backwards.
CLOCK_SKEW = 60.0


class SnapshotError(Exception):
    """The snapshot is unusable (corrupt, incompatible or from another context)."""


def encode_family(family: Metric) -> dict[str, Any]:
    """A metric family as JSON-able data (no timestamps or exemplars: the exporter sets none)."""
    return {
        "name": family.name,
        "documentation": family.documentation,
        "type": family.type,
        "unit": family.unit,
        "samples": [
            {"name": s.name, "labels": dict(s.labels), "value": s.value} for s in family.samples
        ],
    }


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


def encode_entry(entry: CacheEntry, options: Mapping[str, str]) -> dict[str, Any]:
    """One collector's cache entry as JSON-able data."""
    return {
        "interval": entry.interval,
        "options": dict(options),
        "state": entry.state.value,
        "collected_at": entry.collected_at,
        "expires_at": entry.expires_at,
        "last_attempt_at": entry.last_attempt_at,
        "duration": entry.duration,
        "last_error": entry.last_error,
        "consecutive_failures": entry.consecutive_failures,
        "refreshes": dict(entry.refreshes),
        "families": [encode_family(f) for f in entry.families],
    }


def build_document(
    cache: MetricCache, context: Mapping[str, Any], options: Mapping[str, Mapping[str, str]]
) -> dict[str, Any]:
    """The whole snapshot (built on the event loop, so it is a consistent copy)."""
    collectors = {
        name: encode_entry(entry, options.get(name, {}))
        for name, entry in cache.entries.items()
        if entry.state is not State.PENDING
    }
    return {"format": FORMAT, **context, "written_at": time.time(), "collectors": collectors}


def parse_document(raw: bytes, context: Mapping[str, Any]) -> dict[str, Any]:
    """Parse and check a snapshot; raise SnapshotError when it must be ignored."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SnapshotError(f"not valid JSON: {exc}") from None
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


def _number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SnapshotError(f"{key} is not a finite number")
    return float(value)


def restore_entry(entry: CacheEntry, data: Any, options: Mapping[str, str], now: float) -> None:
    """Fill ``entry`` from its snapshot data; all or nothing, SnapshotError when unusable."""
    if not isinstance(data, dict):
        raise SnapshotError("entry is not an object")
    if data.get("options") != dict(options):
        raise SnapshotError("collector options changed")
    try:
        state = State(data["state"])
    except (KeyError, ValueError):
        raise SnapshotError(f"unknown state {data.get('state')!r}") from None
    collected_at = _number(data, "collected_at")
    attempted = _number(data, "last_attempt_at")
    saved_expiry = _number(data, "expires_at") or 0.0
    duration = _number(data, "duration")
    if any(t is not None and t > now + CLOCK_SKEW for t in (collected_at, attempted)):
        raise SnapshotError("timestamps in the future (clock went backwards?)")
    if state is State.OK and collected_at is None:
        raise SnapshotError("state ok without collected_at")
    families = tuple(decode_family(f) for f in data.get("families", []))
    refreshes = data.get("refreshes", {})
    if not isinstance(refreshes, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in refreshes.items()
    ):
        raise SnapshotError("malformed refresh counts")
    last_error = data.get("last_error")
    failures = data.get("consecutive_failures", 0)
    # The interval may have changed since: never keep data longer than the current one allows.
    if state is State.OK and collected_at is not None:
        expires_at = min(saved_expiry, collected_at + entry.interval)
    elif state is State.NOT_APPLICABLE and attempted is not None:
        expires_at = min(saved_expiry, attempted + entry.interval)
    else:
        expires_at = now  # a failed collector is retried at start; its last good data is served
    entry.families, entry.series = families, sum(len(f.samples) for f in families)
    entry.state, entry.collected_at, entry.last_attempt_at = state, collected_at, attempted
    entry.expires_at, entry.duration = expires_at, duration
    entry.last_error = last_error if isinstance(last_error, str) else None
    entry.consecutive_failures = failures if isinstance(failures, int) else 0
    entry.refreshes.clear()
    entry.refreshes.update(refreshes)


def restore(
    cache: MetricCache,
    doc: Mapping[str, Any],
    options: Mapping[str, Mapping[str, str]],
    now: float,
) -> RestoreReport:
    """Restore the entries of still-enabled collectors; report what is fresh or expired."""
    report = RestoreReport()
    for name, data in doc["collectors"].items():
        entry = cache.entries.get(name)
        if entry is None:
            report.skipped[name] = "collector not enabled"
            continue
        try:
            restore_entry(entry, data, options.get(name, {}), now)
        except SnapshotError as exc:
            report.skipped[name] = str(exc)
            continue
        (report.expired if entry.expired(now) else report.fresh).append(name)
    return report
