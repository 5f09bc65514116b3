"""Replaced families are freed in pieces by the reaper thread, never while someone reads them."""

from __future__ import annotations

import weakref

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.entry import EntryView
from exporter.reaper import Reaper


def families(samples: int) -> tuple[Metric, ...]:
    family = GaugeMetricFamily("hw_test_value", "Test.", labels=["device"])
    for i in range(samples):
        family.add_metric([f"dev{i}"], float(i))
    return (family,)


def view(data: tuple[Metric, ...]) -> EntryView:
    return EntryView("a", 60.0, 5.0, families=data)


def test_replaced_families_nobody_holds_are_emptied_by_the_reaper() -> None:
    reaper = Reaper()
    first = families(10_000)
    gone = weakref.ref(first[0])
    reaper.changed(view(first))
    reaper.changed(view(first))  # same data (an invalidation): nothing replaced
    assert reaper.current["a"] is first
    del first
    reaper.changed(view(families(3)))  # the refresh that replaces them
    reaper.close()
    assert reaper.emptied == 1 and gone() is None


def test_families_still_read_elsewhere_are_left_alone() -> None:
    reaper = Reaper()
    first = families(5_000)
    reaper.changed(view(first))
    reaper.changed(view(families(3)))
    reaper.close()  # a render still holds ``first``: the reaper lets go of it untouched
    assert reaper.emptied == 0 and len(first[0].samples) == 5_000


def test_a_family_the_collector_keeps_is_not_emptied() -> None:
    reaper = Reaper()
    kept = families(100)[0]  # a collector that reuses its family objects
    reaper.changed(view((kept,)))
    reaper.changed(view(families(3)))
    reaper.close()
    assert reaper.emptied == 0 and len(kept.samples) == 100
