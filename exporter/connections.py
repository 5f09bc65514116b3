"""Client connections, below aiohttp: a bound on their number, header/idle/write timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from exporter.limits import Handler

log = logging.getLogger(__name__)

# asyncio's default is 64 KiB; said explicitly because it bounds what one slow reader costs.
WRITE_BUFFER_HIGH = 64 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    """``--web.max-connections`` and the connection timeouts, in seconds."""

    max_connections: int = 512
    read_header_timeout: float = 10.0
    idle_timeout: float = 75.0
    write_timeout: float = 30.0


class Throttled:
    """A warning logged at most once per ``interval``, with how many were left out."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self.count = 0
        self._next = 0.0

    def warn(self, message: str, *args: object) -> None:
        """Log ``message`` now, or count it when one was logged less than ``interval`` ago."""
        self.count += 1
        now = self.clock()
        if now < self._next:
            return
        self._next = now + self.interval
        more, self.count = self.count - 1, 0
        if more:
            message += f" ({more} more since the last such message)"
        log.warning(message, *args)


class GuardedProtocol(asyncio.Protocol):
    """One connection: forwards to aiohttp's protocol, runs its timers, tells the guard."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.active = 0  # requests between complete headers and the end of their response
        self.waiting_for = "headers"  # or "request" when idle after a response
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the connection (maybe closing another) and start the header timer."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        self.inner.connection_made(transport)
        self.wait("headers", self.guard.limits.read_header_timeout)
        self.guard.admit(self)

    def data_received(self, data: bytes) -> None:
        """Forward; the first bytes after an idle spell start the header timer."""
        if self.waiting_for == "request" and not self.active:
            self.wait("headers", self.guard.limits.read_header_timeout)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        """Forward."""
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        """The client is not reading fast enough: it has ``--web.write-timeout`` to catch up."""
        self._stall = self.guard.loop.call_later(self.guard.limits.write_timeout, self._stalled)
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        """Forward; the client is reading again."""
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the timers, free the slot, forward."""
        for timer in (self._timer, self._stall):
            if timer is not None:
                timer.cancel()
        self._timer = self._stall = None
        self.guard.forget(self)
        self.inner.connection_lost(exc)

    def wait(self, what: str, timeout: float) -> None:
        """Expect ``what`` within ``timeout`` seconds, else close the connection."""
        self.waiting_for = what
        self._deadline = self.guard.loop.time() + timeout
        # One timer handle per connection, moved only when the deadline comes earlier.
        if self._timer is not None and self._timer.when() > self._deadline:
            self._timer.cancel()
            self._timer = None
        if self._timer is None:
            self._timer = self.guard.loop.call_at(self._deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self.active or self.transport is None:
            return
        if self.guard.loop.time() < self._deadline:
            self._timer = self.guard.loop.call_at(self._deadline, self._expire)
            return
        self.close(f"no {self.waiting_for} in time")

    def _stalled(self) -> None:
        self._stall = None
        self.guard.stalled += 1
        self.guard.write_timeouts.warn(
            "closed a connection whose client read nothing for %gs (--web.write-timeout)",
            self.guard.limits.write_timeout,
        )
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: reset now, dropping what the kernel holds too; a plain close would
            # leave it probing a zero window for minutes.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def close(self, why: str) -> None:
        """Close the connection (once it has written what it already buffered)."""
        if self.transport is not None and not self.transport.is_closing():
            log.debug("closing connection from %s: %s", self.peer(), why)
            self.transport.close()

    def peer(self) -> str:
        """The client's address, for log lines."""
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"


class ConnectionGuard:
    """Bounds open connections; past the bound the longest-waiting idle one is closed."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        # aiohttp's protocol factory (its low-level server), set once the runner is set up.
        self.protocol_factory: Callable[[], asyncio.Protocol] | None = None
        self.loop = asyncio.get_running_loop()
        self.open: dict[asyncio.BaseTransport, GuardedProtocol] = {}
        # Connections not handling a request, longest waiting first (dicts keep order).
        self.idle: dict[GuardedProtocol, None] = {}
        # The tasks handling requests (one per request), so a shutdown can cancel them.
        self.requests: set[asyncio.Task[Any]] = set()
        self.hurried = False
        self.evicted = 0
        self.refused = 0
        self.stalled = 0
        self.full = Throttled()
        self.write_timeouts = Throttled()

    def __call__(self) -> GuardedProtocol:
        """The protocol factory for ``loop.create_server``."""
        assert self.protocol_factory is not None
        return GuardedProtocol(self, self.protocol_factory())

    def hurry(self) -> None:
        """Signal handler during the drain: cancel in-flight requests instead of waiting."""
        if not self.hurried:
            self.hurried = True
            log.info("signal received again: cancelling %d in-flight requests", len(self.requests))
            for task in self.requests:
                task.cancel()

    def admit(self, conn: GuardedProtocol) -> None:
        """Count a new connection in; at the bound close an idle one, or this one if none is."""
        if len(self.open) >= self.limits.max_connections:
            victim = next(iter(self.idle), None)
            if victim is None:
                self.refused += 1
                self._warn_full("refused a new connection: every connection has a request")
                conn.close("every connection has a request in progress")
                return
            self.evicted += 1
            self._warn_full("closed the longest idle connection to admit a new one")
            self.forget(victim)
            victim.close("idle at the connection limit")
        assert conn.transport is not None
        self.open[conn.transport] = conn
        self.idle[conn] = None

    def forget(self, conn: GuardedProtocol) -> None:
        """Count a connection out (closed, or being closed)."""
        if conn.transport is not None and self.open.get(conn.transport) is conn:
            del self.open[conn.transport]
        self.idle.pop(conn, None)

    def _warn_full(self, what: str) -> None:
        self.full.warn("%s (--web.max-connections=%d reached)", what, self.limits.max_connections)

    def request_started(self, conn: GuardedProtocol) -> None:
        """Complete request headers arrived: no timer until its response is written."""
        conn.active += 1
        self.idle.pop(conn, None)

    def request_done(self, conn: GuardedProtocol) -> None:
        """A response was written (or abandoned): idle until the next request."""
        conn.active -= 1
        if conn.active or conn.transport is None or conn.transport not in self.open:
            return
        self.idle[conn] = None
        conn.wait("request", self.limits.idle_timeout)

    def middleware(self) -> Middleware:
        """The outermost middleware: a connection is busy until its request's task is done."""

        @web.middleware
        async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
            transport = request.transport
            conn = self.open.get(transport) if transport is not None else None
            task = asyncio.current_task()
            if task is not None:
                self.requests.add(task)
                task.add_done_callback(self.requests.discard)
            if conn is not None and task is not None:
                self.request_started(conn)
                # aiohttp writes the response after the handlers return, still in this task.
                task.add_done_callback(lambda _: self.request_done(conn))
            return await handler(request)

        return track
