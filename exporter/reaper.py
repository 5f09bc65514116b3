"""Free the families a refresh replaced in small pieces, in a thread of their own.

Dropping the last reference to 100k cached samples frees about 500k objects in one chain of C
calls that holds the GIL throughout (250-300 ms on the shared test VM): the event loop waits,
whichever thread drops it. The reaper keeps a reference to each collector's current families,
so a refresh that replaces them never frees them; its thread then empties each samples list a
chunk at a time once nobody else holds the families (a render or a snapshot write may still
read them), and the GIL changes hands between chunks.
"""

from __future__ import annotations

import queue
import sys
import threading
import time

from prometheus_client.metrics_core import Metric

from exporter.entry import EntryView

CHUNK = 2000  # samples freed at once (a few ms)
POLL = 0.02  # seconds between looks at families someone else still holds
PATIENCE = 120.0  # after that, their last holder frees them


def _empty(families: tuple[Metric, ...]) -> int:
    """Empty, ``CHUNK`` at a time, the samples lists only ``families`` holds; how many."""
    emptied = 0
    for family in families:
        samples = family.samples
        # The tuple, ``family`` and getrefcount's argument; the family, ``samples`` and the
        # argument: any more and someone else (a collector keeping its families) can see it.
        if sys.getrefcount(family) != 3 or sys.getrefcount(samples) != 3:
            continue
        while samples:
            del samples[-CHUNK:]
        emptied += 1
    return emptied


class Reaper:
    """``MetricCache`` change listener that frees replaced families off the event loop."""

    def __init__(self) -> None:
        self.current: dict[str, tuple[Metric, ...]] = {}
        self.emptied = 0  # families freed in pieces
        self._queue: queue.SimpleQueue[tuple[Metric, ...] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="reaper", daemon=True)
        self._thread.start()

    def changed(self, view: EntryView) -> None:
        """Take over the reference to the families ``view`` replaces."""
        if self.current.get(view.name) is not view.families:
            self._queue.put(self.current.pop(view.name, ()))
            self.current[view.name] = view.families

    def close(self) -> None:
        """Stop the thread after one last look at what it holds (tests)."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        waiting: list[tuple[Metric, ...]] = []
        deadlines: list[float] = []
        stop = False
        while not stop:
            try:
                item = self._queue.get(timeout=POLL if waiting else None)
            except queue.Empty:
                item = ()
            stop = item is None
            if item:
                waiting.append(item)
                deadlines.append(time.monotonic() + PATIENCE)
            item = ()  # no reference of ours outside ``waiting``
            now = time.monotonic()
            for i in reversed(range(len(waiting))):
                # Held by ``waiting`` and getrefcount's argument alone: nobody else can reach it.
                if sys.getrefcount(waiting[i]) == 2:
                    self.emptied += _empty(waiting.pop(i))
                    deadlines.pop(i)
                elif now > deadlines[i] or stop:
                    del waiting[i], deadlines[i]
