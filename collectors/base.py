"""The collector contract: context of injected sources, outcomes, and base classes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import psutil
from prometheus_client.metrics_core import Metric

# The contract's two outcomes besides families (defined in the toolkit, which runs the tools).
from collectors.toolkit.errors import CollectorError as CollectorError
from collectors.toolkit.errors import NotApplicable as NotApplicable
from collectors.toolkit.options import CollectorOption, Options
from collectors.toolkit.runner import CommandRunner


@dataclass(frozen=True)
class CollectorContext:
    """Data sources injected into every collector; defaults are the real machine."""

    procfs: Path = Path("/proc")
    sysfs: Path = Path("/sys")
    rootfs: Path = Path("/")
    runner: CommandRunner = field(default_factory=CommandRunner)
    psutil: types.ModuleType | Any = psutil
    options: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 60.0


# Reports one item left out of a collection: ``skip(item, reason)``.
SkipItem = Callable[[str, str], None]
SKIP_EXAMPLES = 3  # reasons kept (and logged) per collection; the rest are only counted


@dataclass(frozen=True)
class Skipped:
    """Items one collection left out as unreadable: how many, and the first reasons."""

    count: int = 0
    first: tuple[str, ...] = ()

    def __str__(self) -> str:
        items = "item" if self.count == 1 else "items"
        more = self.count - len(self.first)
        rest = f"; and {more} more" if more > 0 else ""
        return f"{self.count} unreadable {items} left out: {'; '.join(self.first)}{rest}"


class Collector(ABC):
    """A source of metric families; ``collect`` runs off the event loop's hot path."""

    # The ``--collector.<name>.<option>`` flags, with defaults (set by ``register``).
    declared_options: ClassVar[tuple[CollectorOption, ...]] = ()

    def __init__(self, ctx: CollectorContext) -> None:
        self.ctx = ctx
        # Parsed once: a bad value fails here, when the collector is built at startup.
        self.options = Options(self.declared_options, ctx.options)
        self._skipped = Skipped()
        self._skip_lock = threading.Lock()  # a BlockingCollector skips from its own thread

    @abstractmethod
    async def collect(self) -> Sequence[Metric]:
        """Collect and return prometheus_client metric families."""

    def skip(self, item: str, reason: str) -> None:
        """Leave one unreadable item out of this collection; the framework counts and logs it."""
        with self._skip_lock:
            first = self._skipped.first
            if len(first) < SKIP_EXAMPLES:
                first = (*first, f"{item}: {reason}"[:300])
            self._skipped = Skipped(self._skipped.count + 1, first)

    def take_skipped(self) -> Skipped:
        """Return the items skipped since the last call and start counting afresh."""
        with self._skip_lock:
            skipped, self._skipped = self._skipped, Skipped()
        return skipped

    async def close(self) -> None:  # noqa: B027 - optional hook, most collectors hold nothing
        """Release what outlives a collection (a remote session); nothing by default."""


class BlockingCollector(Collector):
    """A collector whose work is blocking I/O; it runs in a thread of its own.

    Not the shared executor: a read that hangs in the kernel (a wedged sysfs attribute)
    cannot be interrupted, so its thread must neither starve other work nor be started
    again while it is still stuck, and must not keep the process alive at shutdown.
    """

    _worker: threading.Thread | None = None

    async def collect(self) -> Sequence[Metric]:
        """Run ``collect_blocking`` in a daemon thread and await its result."""
        if self._worker is not None and self._worker.is_alive():
            raise CollectorError(
                "the previous collection is still blocked (a hung read?); not starting another"
            )
        self.take_skipped()  # a timed-out thread that finished late skipped for its own run
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Sequence[Metric]] = loop.create_future()

        def work() -> None:
            try:
                result = self.collect_blocking()
            except BaseException as exc:
                _resolve(loop, future, None, exc)
            else:
                _resolve(loop, future, result, None)

        self._worker = threading.Thread(target=work, name=f"collect-{type(self).__name__}")
        self._worker.daemon = True
        self._worker.start()
        return await future

    @abstractmethod
    def collect_blocking(self) -> Sequence[Metric]:
        """Collect synchronously (called in a worker thread)."""


def _resolve(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Sequence[Metric]],
    result: Sequence[Metric] | None,
    error: BaseException | None,
) -> None:
    """Hand a worker thread's outcome to the loop (unless it gave up or is gone)."""

    def settle() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or ())

    with contextlib.suppress(RuntimeError):  # the loop closed while the thread was stuck
        loop.call_soon_threadsafe(settle)


def read_text(path: Path) -> str | None:
    """Read a small sysfs/procfs file, stripped; ``None`` when absent or unreadable."""
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def read_number(path: Path) -> float | None:
    """Read a numeric sysfs file; ``None`` when absent, unreadable or not a number."""
    text = read_text(path)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None
