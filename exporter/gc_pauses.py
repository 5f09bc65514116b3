"""Keep CPython's cyclic garbage collector from stalling the event loop on a big cache.

A full collection walks every tracked object while holding the GIL, and every cached sample is
one (prometheus_client's ``Sample`` is a named tuple, which CPython never untracks): at 100k
samples, full passes stopped the loop for 100-200 ms of CPU each. Cached families hold no
reference cycles, so reference counting frees them when a refresh replaces them; the collector
need not look at them. After each data change, what is alive is moved out of its sight
(``gc.freeze``), and full passes over the rest are made rarer.
"""

from __future__ import annotations

import gc

from exporter.cache import MetricCache
from exporter.entry import EntryView

# Middle-generation passes between two full ones (CPython's default is 10).
FULL_COLLECTION_EVERY = 100
# A frozen object that dies in a reference cycle is only freed by a full pass over everything:
# one is made (a single pause) whenever the frozen objects outgrow this factor since the last.
THAW_GROWTH = 2.0


class GcPauses:
    """``MetricCache`` change listener: freeze after each change, thaw when frozen ones pile up."""

    def __init__(self) -> None:
        self.live = 0  # frozen objects right after the last full pass
        self.full_passes = 0

    def changed(self, view: EntryView) -> None:
        """Freeze what is alive now: the new families among it."""
        gc.collect(1)  # young garbage is cheap to free now, and never frozen
        gc.freeze()
        if gc.get_freeze_count() > self.live * THAW_GROWTH:
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self.live = gc.get_freeze_count()
            self.full_passes += 1


def install(*caches: MetricCache) -> GcPauses:
    """Make full collections rare and freeze the caches' data after each change."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    pauses = GcPauses()
    for cache in caches:
        cache.on_change(pauses.changed)
    return pauses
