"""Which metric families a collector may serve: checked on every refresh and snapshot restore."""

from __future__ import annotations

import re
from collections.abc import Sequence

from prometheus_client.metrics_core import Metric

NAMESPACE = "hw_"
# The exporter's own families (freshness, build info, response cache) all start with this.
RESERVED = "hwcache_"

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Sample names a family of each type may hold (prometheus_client's own conventions).
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
    "summary": ("", "_count", "_sum", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
}


class FamilyError(ValueError):
    """Families that must not be served; the refresh or restore carrying them fails."""


def owned_prefixes(collector: str) -> tuple[str, ...]:
    """Family-name prefixes a collector owns: ``hw_<name>``, or its singular (disks: hw_disk)."""
    base = NAMESPACE + collector
    return (base, base.removesuffix("s")) if base.endswith("s") else (base,)


def owns(prefixes: Sequence[str], name: str) -> bool:
    """Whether ``name`` is one of ``prefixes`` or continues one of them after an underscore."""
    return any(name == prefix or name.startswith(prefix + "_") for prefix in prefixes)


def check_families(families: Sequence[object], prefixes: Sequence[str] | None = None) -> None:
    """Raise FamilyError unless all are well-formed, unique hw_ families (owned: ``prefixes``)."""
    names: set[str] = set()
    labels: set[str] = set()
    for family in families:
        if not isinstance(family, Metric):
            raise FamilyError(f"got {type(family).__name__}, not a metric family")
        name = family.name
        if name in names:
            raise FamilyError(f"family {name} appears twice")
        names.add(name)
        if name.startswith(RESERVED):
            raise FamilyError(f"family {name} is reserved for the exporter's own metrics")
        if not name.startswith(NAMESPACE) or not _NAME.fullmatch(name):
            raise FamilyError(f"family {name!r} is not a {NAMESPACE}* metric name")
        if prefixes is not None and not owns(prefixes, name):
            owned = " or ".join(f"{prefix}_*" for prefix in prefixes)
            raise FamilyError(f"family {name} is not this collector's (it owns {owned})")
        allowed = {name + suffix for suffix in _SUFFIXES.get(family.type, ())}
        for sample in family.samples:
            if sample.name not in allowed:
                raise FamilyError(f"sample {sample.name!r} does not belong to {family.type} {name}")
            for label in sample.labels:
                if label not in labels:
                    if not _LABEL.fullmatch(label) or label.startswith("__"):
                        raise FamilyError(f"family {name}: invalid label name {label!r}")
                    labels.add(label)
