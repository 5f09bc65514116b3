"""The one helper that runs external tools: argv only, timeout, process-group kill, bounded output."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024


@dataclass(frozen=True)
class CommandResult:
    """What a finished tool run produced."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes
    duration: float


class CommandError(Exception):
    """A tool could not be run to completion."""


class CommandNotFound(CommandError):
    """The tool is not installed (not on PATH)."""


class CommandTimeout(CommandError):
    """The tool ran past its timeout and was killed with its process group."""


class CommandOutputTooLarge(CommandError):
    """The tool printed more than the output bound and was killed."""


class CommandPermissionDenied(CommandError):
    """The tool exists but may not be executed by this user."""


class CommandRunner:
    """Runs tools in their own process group and kills the whole group on timeout or cancel."""

    def __init__(
        self,
        max_output: int = DEFAULT_MAX_OUTPUT,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.max_output = max_output
        self.env = dict(env) if env is not None else None
        self._live: set[int] = set()

    @property
    def live_process_groups(self) -> frozenset[int]:
        """Process groups of tools currently running."""
        return frozenset(self._live)

    def which(self, name: str) -> str | None:
        """Resolve a tool name on this runner's PATH."""
        path = (self.env or os.environ).get("PATH")
        return shutil.which(name, path=path)

    async def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        """Run ``argv`` (no shell) and return its exit status and output."""
        if not argv:
            raise ValueError("empty argv")
        started = time.perf_counter()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                env=self.env,
            )
        except FileNotFoundError as exc:
            raise CommandNotFound(f"{argv[0]}: not found") from exc
        except PermissionError as exc:
            raise CommandPermissionDenied(f"{argv[0]}: permission denied") from exc
        self._live.add(proc.pid)
        try:
            async with asyncio.timeout(timeout):
                stdout, stderr = await asyncio.gather(
                    self._read_bounded(proc.stdout, argv[0]),
                    self._read_bounded(proc.stderr, argv[0]),
                )
                returncode = await proc.wait()
        except TimeoutError:
            await self._kill_group(proc)
            raise CommandTimeout(
                f"{argv[0]}: timed out after {timeout:g}s (process group killed)"
            ) from None
        except BaseException:
            await self._kill_group(proc)
            raise
        finally:
            self._live.discard(proc.pid)
        return CommandResult(tuple(argv), returncode, stdout, stderr, time.perf_counter() - started)

    async def _read_bounded(self, stream: asyncio.StreamReader | None, tool: str) -> bytes:
        if stream is None:
            return b""
        chunks: list[bytes] = []
        size = 0
        while chunk := await stream.read(65536):
            size += len(chunk)
            if size > self.max_output:
                raise CommandOutputTooLarge(
                    f"{tool}: output exceeded {self.max_output} bytes (process group killed)"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _kill_group(self, proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        # Reap the direct child so no zombie stays behind; shield so a second cancel can't skip it.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(proc.wait())

    def kill_all(self) -> None:
        """Kill every running tool's process group (used at shutdown)."""
        for pgid in list(self._live):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            log.info("killed tool process group %d at shutdown", pgid)
