"""DMTF's Redfish mockups in tests/fixtures/redfish: resources by path, for services and checks."""

from __future__ import annotations

import json
from collections import Counter
from functools import cached_property
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support import FIXTURES

MOCKUPS = FIXTURES / "redfish"
ROOT = "/redfish/v1/"
Series = dict[tuple[str, str], float]  # (metric, the label that names the part) -> value
PART_LABELS = ("sensor", "fan", "supply", "control", "module", "drive")


class Mockup:
    """One mockup folder (``<path>/index.json`` per resource), read as the service serves it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.folder = MOCKUPS / name

    @cached_property
    def tree(self) -> dict[str, dict[str, Any]]:
        """Every resource by its path (``/redfish/v1/`` for the root, no trailing slash else)."""
        found = {}
        for index in sorted(self.folder.rglob("index.json")):
            relative = index.parent.relative_to(self.folder).as_posix()
            path = ROOT if relative == "." else ROOT + relative
            found[path] = json.loads(index.read_text(encoding="utf-8"))
        return found

    def get(self, path: str) -> dict[str, Any]:
        """The resource at ``path`` (KeyError when the copy does not hold it)."""
        return self.tree[path if path == ROOT else path.rstrip("/")]

    def members(self, path: str) -> list[dict[str, Any]]:
        """The members of the collection at ``path`` that the copy holds."""
        links = [m["@odata.id"] for m in self.get(path)["Members"]]
        return [self.get(link) for link in links if link in self.tree]


def sensors_by(mockup: Mockup, chassis: str, units: str) -> dict[str, dict[str, Any]]:
    """The chassis' member Sensors in ``units`` that have a reading, by Id."""
    found = mockup.members(f"/redfish/v1/Chassis/{chassis}/Sensors")
    return {s["Id"]: s for s in found if s.get("ReadingUnits") == units and "Reading" in s}


def parse(text: str) -> Series:
    """A probe's samples by (name, part label); asserts that no series is there twice."""
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    keys = Counter((s.name, tuple(sorted(s.labels.items()))) for s in samples)
    assert [k for k, n in keys.items() if n > 1] == []
    series = {}
    for s in samples:
        labels = s.labels if s.name.startswith("hw_redfish_") else {}
        part = next((labels[k] for k in PART_LABELS if k in labels), "")
        series[(s.name, part)] = s.value
    return series


def of(series: Series, metric: str) -> dict[str, float]:
    """The samples of one metric, by part label."""
    return {part: value for (name, part), value in series.items() if name == metric}
