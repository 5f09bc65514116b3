"""Which metric families a collector may serve: checked on every refresh and snapshot restore."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric

from collectors.registry import REGISTRY

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


@dataclass(frozen=True)
class Namespace:
    """The family names one cache entry may serve."""

    # Every name starts with ``prefix`` ("" = any name); none starts with a ``forbidden`` one.
    prefix: str
    forbidden: tuple[tuple[str, str], ...]  # (prefix, whose names those are)
    # Built-in collectors own ``hw_<name>_*``: a restored snapshot may hold nothing else.
    per_collector: bool

    def owned(self, collector: str) -> tuple[str, ...] | None:
        """Prefixes a snapshot restore of ``collector`` may hold (``None``: the namespace's)."""
        return owned_prefixes(collector) if self.per_collector else None


_EXPORTER = (RESERVED, "the exporter's own metrics")
# Built-in collectors: hw_<name>_* only.
BUILTIN = Namespace(NAMESPACE, (_EXPORTER,), per_collector=True)
# Configured scripts keep the names they print (smartmon_*, storcli_*), outside hw_ and hwcache_.
SCRIPT = Namespace("", (_EXPORTER, (NAMESPACE, "the built-in collectors")), per_collector=False)
# Remote targets (/probe): hw_<driver>_* under entry names like "bmc/10.1.2.3".
REMOTE = Namespace(NAMESPACE, (_EXPORTER,), per_collector=False)


def owned_prefixes(collector: str) -> tuple[str, ...]:
    """Prefixes a collector owns: ``hw_<name>`` (or its singular) and its ``also_exports``."""
    base = NAMESPACE + collector
    own = (base, base.removesuffix("s")) if base.endswith("s") else (base,)
    spec = REGISTRY.get(collector)
    return own + (spec.also_exports if spec is not None else ())


def owns(prefixes: Sequence[str], name: str) -> bool:
    """Whether ``name`` is one of ``prefixes`` or continues one of them after an underscore."""
    return any(name == prefix or name.startswith(prefix + "_") for prefix in prefixes)


def check_families(
    families: Sequence[object],
    prefixes: Sequence[str] | None = None,
    namespace: Namespace = BUILTIN,
) -> None:
    """Raise FamilyError unless all are well-formed, unique families of ``namespace``."""
    names: set[str] = set()
    labels: set[str] = set()
    for family in families:
        if not isinstance(family, Metric):
            raise FamilyError(f"got {type(family).__name__}, not a metric family")
        name = family.name
        if name in names:
            raise FamilyError(f"family {name} appears twice")
        names.add(name)
        for forbidden, whose in namespace.forbidden:
            if name.startswith(forbidden):
                raise FamilyError(f"family {name} is reserved for {whose} ({forbidden}*)")
        if not name.startswith(namespace.prefix) or not _NAME.fullmatch(name):
            raise FamilyError(f"family {name!r} is not a {namespace.prefix}* metric name")
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
