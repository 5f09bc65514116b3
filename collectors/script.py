"""A configured script as a collector: run it, parse the text exposition it prints, check it.

Not registered: scripts come from ``--collector.script.config``, one instance per script.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from collectors.base import Collector, CollectorContext, CollectorError

log = logging.getLogger(__name__)

_SAMPLE_NAME = re.compile(r"[^{\s]+")
STDERR_SHOWN = 300  # characters of a failing script's last stderr line in its error


class ScriptCollector(Collector):
    """Runs one script (argv, no shell) through the runner and serves what it prints."""

    def __init__(
        self,
        ctx: CollectorContext,
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> None:
        super().__init__(ctx)
        self.command = tuple(command)
        self.env = dict(env or {})
        self.workdir = workdir

    async def collect(self) -> Sequence[Metric]:
        """Run the script; a non-zero exit or unservable output fails this refresh."""
        result = await self.ctx.runner.run(
            self.command, timeout=self.ctx.timeout, env=self.env, cwd=self.workdir
        )
        if result.returncode != 0:
            # The last line of stderr says why (a traceback's last line is the exception).
            lines = result.stderr.decode(errors="replace").strip().splitlines()
            detail = f": {lines[-1][:STDERR_SHOWN]}" if lines else " (no stderr)"
            raise CollectorError(
                f"{self.command[0]} exited with status {result.returncode}{detail}"
            )
        # Parsing a large exposition takes a while: not on the event loop.
        return await asyncio.to_thread(parse_exposition, result.stdout)


def parse_exposition(data: bytes) -> list[Metric]:
    """Families of a Prometheus text exposition; CollectorError for anything not servable."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CollectorError(f"output is not UTF-8 ({exc})") from None
    text = _check_types(text)
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as exc:  # the parser raises ValueError, IndexError, KeyError, ...
        raise CollectorError(f"output is not the text exposition format: {exc!r}") from None
    for family in families:
        for sample in family.samples:
            if sample.timestamp is not None:
                # As node_exporter's textfile collector: a cached value must not claim a time.
                raise CollectorError(
                    f"sample {sample.name} has a timestamp; timestamps are not supported "
                    "(remove it from the script's output)"
                )
    return families


def _check_types(text: str) -> str:
    """Refuse a metric typed twice; serve a counter without ``_total`` as untyped.

    prometheus_client's parser silently keeps the last of two TYPE lines and renames a
    counter sample ``x`` to ``x_total``; the script's own names and types must win.
    """
    lines = text.split("\n")
    declared: dict[str, tuple[str, int]] = {}
    for index, line in enumerate(lines):
        parts = line.strip().split(None, 3)
        if len(parts) == 4 and parts[0] == "#" and parts[1] == "TYPE":
            name, kind = parts[2], parts[3].strip()
            if name in declared:
                raise CollectorError(
                    f"type conflict: {name} is declared as {declared[name][0]} "
                    f"(line {declared[name][1] + 1}) and as {kind} (line {index + 1})"
                )
            declared[name] = (kind, index)
    bare = {
        n for n, (kind, _) in declared.items() if kind == "counter" and not n.endswith("_total")
    }
    if not bare:
        return text
    printed = {
        match.group(0)
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
        if (match := _SAMPLE_NAME.match(line.strip()))
    }
    for name in bare & printed:
        lines[declared[name][1]] = f"# TYPE {name} untyped"
    return "\n".join(lines)
