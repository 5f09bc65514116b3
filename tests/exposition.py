"""Shared exposition helpers: render fixed families, parse samples, look values up."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from exporter.render import Families
from tests.support import Exporter

Key = tuple[str, frozenset[tuple[str, str]]]
Samples = dict[Key, float]


def exposition(families: Iterable[Metric]) -> bytes:
    """prometheus_client's text rendering: what a scrape of these families returns."""
    return generate_latest(Families(list(families)))


def parsed(source: str | Iterable[Metric]) -> Iterable[Metric]:
    """Families of a text exposition, or the given families unchanged."""
    return text_string_to_metric_families(source) if isinstance(source, str) else source


def samples(source: str | Iterable[Metric]) -> Samples:
    """(sample name, labels) -> value of a text exposition or of families."""
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in parsed(source) for s in f.samples
    }


def key(name: str, /, **labels: str) -> Key:
    """The ``samples`` key of one sample."""
    return name, frozenset(labels.items())


def value(source: str | Iterable[Metric], name: str, /, **labels: str) -> float | None:
    """The first sample ``name`` whose labels include ``labels``; None when absent."""
    for family in parsed(source):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return None


def scrape(exporter: Exporter) -> Samples:
    """GET /metrics from a running exporter (must answer 200) and parse its samples."""
    status, body = exporter.get("/metrics")
    assert status == 200
    return samples(body.decode())
