"""The collector contract: context of injected sources, outcomes, and base classes."""

from __future__ import annotations

import asyncio
import types
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.metrics_core import Metric

from exporter.runner import CommandRunner


class NotApplicable(Exception):
    """This collector has nothing to collect here: hardware or tool absent."""


class CollectorError(Exception):
    """A collection failed; the message is shown in /cache/stats and logs."""


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

    def option(self, name: str) -> str:
        """Return a collector option's value (flag ``--collector.<name>.<option>``)."""
        return self.options.get(name, "")

    def flag(self, name: str) -> bool:
        """Return a boolean collector option."""
        return self.option(name).lower() in {"1", "true", "yes", "on"}


class Collector(ABC):
    """A source of metric families; ``collect`` runs off the event loop's hot path."""

    def __init__(self, ctx: CollectorContext) -> None:
        self.ctx = ctx

    @abstractmethod
    async def collect(self) -> Sequence[Metric]:
        """Collect and return prometheus_client metric families."""


class BlockingCollector(Collector):
    """A collector whose work is blocking I/O; it runs in a worker thread."""

    async def collect(self) -> Sequence[Metric]:
        """Run ``collect_blocking`` in a worker thread."""
        return await asyncio.to_thread(self.collect_blocking)

    @abstractmethod
    def collect_blocking(self) -> Sequence[Metric]:
        """Collect synchronously (called in a worker thread)."""


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
