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
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024
# Once the tool exited, how long its pipes may stay open (held by a process that left the
# tool's process group, e.g. a daemon it started with setsid) before the run ends anyway.
EOF_GRACE = 0.5


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


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Capture(asyncio.Protocol):
    """One output pipe read into memory up to ``limit`` bytes; this side opens and closes it."""

    def __init__(self, limit: int) -> None:
        loop = asyncio.get_running_loop()
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflow = False
        self.done: asyncio.Future[None] = loop.create_future()  # EOF or overflow
        self.lost: asyncio.Future[None] = loop.create_future()  # read end closed
        self.transport: asyncio.BaseTransport | None = None

    async def open(self) -> int:
        """Create the pipe and start reading it; return the write end for the child."""
        read_fd, write_fd = os.pipe()
        pipe = os.fdopen(read_fd, "rb", buffering=0)
        try:
            await asyncio.get_running_loop().connect_read_pipe(lambda: self, pipe)
        except BaseException:
            pipe.close()
            os.close(write_fd)
            raise
        return write_fd

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport so the pipe can be closed from this side."""
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Keep the bytes, or stop reading for good once the bound is passed."""
        if self.overflow:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.overflow = True
            self.chunks.clear()
            self.close()
            _resolve(self.done)
        else:
            self.chunks.append(data)

    def eof_received(self) -> None:
        """The last writer closed its end (the transport then closes ours)."""
        _resolve(self.done)

    def connection_lost(self, exc: Exception | None) -> None:
        """Our read end is closed."""
        _resolve(self.done)
        _resolve(self.lost)

    def close(self) -> None:
        """Stop reading and close the read end (idempotent)."""
        if self.transport is None:
            _resolve(self.done)
            _resolve(self.lost)
        else:
            self.transport.close()

    @property
    def data(self) -> bytes:
        """Everything read so far."""
        return b"".join(self.chunks)


class CommandRunner:
    """Runs tools in their own process group and kills the whole group after every run.

    The group is killed when the run ends, whatever the outcome (exit, timeout, output bound,
    cancel), so a tool's background children never outlive it. A process that left the group
    (setsid) escapes that kill: once the tool itself exited the run waits at most
    ``EOF_GRACE`` for its pipes, then returns the tool's result and closes them; such
    processes are reaped by the service manager (the systemd unit's ``KillMode``).
    """

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

    async def run(
        self,
        argv: Sequence[str],
        timeout: float,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        """Run ``argv`` (no shell) and return its exit status and output.

        ``env`` is added to the runner's environment for this run; ``cwd`` is its directory.
        """
        if not argv:
            raise ValueError("empty argv")
        started = time.perf_counter()
        out, err = _Capture(self.max_output), _Capture(self.max_output)
        run_env = None if not env else {**(self.env or os.environ), **env}
        try:
            proc = await self._spawn(argv, out, err, run_env or self.env, cwd)
        except BaseException:
            out.close()
            err.close()
            await asyncio.shield(asyncio.gather(out.lost, err.lost))
            raise
        pgid = proc.pid  # start_new_session: the tool leads its own group
        self._live.add(pgid)
        exited = asyncio.ensure_future(proc.wait())
        watched: list[asyncio.Future[Any]] = [exited, out.done, err.done]
        try:
            try:
                async with asyncio.timeout(timeout):
                    while not exited.done():  # until the tool exits or prints too much
                        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
                        self._check_size(argv[0], out, err)
            finally:
                self._kill_group(pgid)  # every run: children left in the group die with it
            reading = [f for f in (out.done, err.done) if not f.done()]
            if reading:  # the tool exited; an escaped process may still hold the pipes
                await asyncio.wait(reading, timeout=EOF_GRACE)
            self._check_size(argv[0], out, err)
        except TimeoutError:
            raise CommandTimeout(
                f"{argv[0]}: timed out after {timeout:g}s (process group killed)"
            ) from None
        finally:
            out.close()
            err.close()
            try:
                # Reap via the process handle only (no Popen.poll behind asyncio's back) and
                # wait for both read ends to close; shielded: a second cancel can't stop that.
                await asyncio.shield(asyncio.gather(exited, out.lost, err.lost))
            finally:
                self._live.discard(pgid)
        return CommandResult(
            tuple(argv), exited.result(), out.data, err.data, time.perf_counter() - started
        )

    async def _spawn(
        self,
        argv: Sequence[str],
        out: _Capture,
        err: _Capture,
        env: Mapping[str, str] | None,
        cwd: str | None,
    ) -> asyncio.subprocess.Process:
        write_fds: list[int] = []
        try:
            write_fds.append(await out.open())
            write_fds.append(await err.open())
            return await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fds[0],
                stderr=write_fds[1],
                start_new_session=True,
                env=env,
                cwd=cwd,
            )
        except FileNotFoundError as exc:
            raise CommandNotFound(f"{argv[0]}: not found") from exc
        except PermissionError as exc:
            raise CommandPermissionDenied(f"{argv[0]}: permission denied") from exc
        finally:
            for fd in write_fds:  # the child has its copies; ours would hide its EOF
                os.close(fd)

    def _check_size(self, tool: str, out: _Capture, err: _Capture) -> None:
        for name, capture in (("stdout", out), ("stderr", err)):
            if capture.overflow:
                raise CommandOutputTooLarge(
                    f"{tool}: {name} exceeded {self.max_output} bytes (process group killed)"
                )

    @staticmethod
    def _kill_group(pgid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
