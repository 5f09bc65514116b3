"""Client connections, below aiohttp: a bound on their number, header/idle/write timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
import time
from asyncio import sslproto
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger(__name__)

# asyncio's default is 64 KiB; said explicitly because it bounds what one slow reader costs.
WRITE_BUFFER_HIGH = 64 * 1024
# asyncio gives every TLS connection a read buffer of SSLProtocol.max_size, 256 KiB: 128 MiB
# at the default connection bound, most of it for clients that sent nothing. One TLS record
# holds at most 16 KiB, so 32 KiB costs no throughput.
TLS_READ_BUFFER = 32 * 1024


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
    """One client connection from its accept: counted, timed, TLS set up here, then aiohttp's.

    The guard owns the TCP transport from the start, so a connection still in its TLS handshake
    is counted against ``--web.max-connections`` and closed by the header timeout like any other.
    """

    def __init__(
        self, guard: ConnectionGuard, inner: asyncio.Protocol, tls: ssl.SSLContext | None = None
    ) -> None:
        self.guard = guard
        self.inner = inner
        self.tls = tls
        self.raw: asyncio.Transport | None = None  # the TCP connection
        self.transport: asyncio.Transport | None = None  # what aiohttp talks to (maybe TLS)
        self.active = 0  # requests between complete headers and the end of their response
        self.waiting_for = "headers"  # or "request" when idle after a response
        # Bytes arrived after the last complete header block: a request not complete yet.
        self.partial = False
        self._tail = b""
        self._early: list[bytes] = []  # decrypted before aiohttp's protocol was connected
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the connection (maybe closing another), start the header timer, then TLS."""
        assert isinstance(transport, asyncio.Transport)
        self.raw = transport
        # One deadline for the TLS handshake and the request headers together.
        self.wait("headers", self.guard.limits.read_header_timeout)
        if not self.guard.admit(self):
            return
        if self.tls is None:
            self.connect(transport)
        else:
            self.guard.start_tls(self, transport, self.tls)

    def connect(self, transport: asyncio.Transport) -> None:
        """Hand the (decrypted) connection to aiohttp."""
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        self.inner.connection_made(transport)
        early, self._early = self._early, []
        for data in early:
            self.inner.data_received(data)

    def data_received(self, data: bytes) -> None:
        """Forward; the first bytes after an idle spell start the header timer."""
        if self.waiting_for == "request" and not self.active:
            self.wait("headers", self.guard.limits.read_header_timeout)
        # A client may send its next request before the previous response is written
        # (pipelining); if only part of it came, it must be complete by the header timeout.
        seen = self._tail + data
        end = seen.rfind(b"\r\n\r\n")
        self.partial = end < 0 or end + 4 < len(seen)
        self._tail = seen[-3:]
        if self.transport is None:
            # asyncio hands over what followed the TLS handshake before start_tls returns.
            self._early.append(data)
            return
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        """Forward."""
        return self.inner.eof_received() if self.transport is not None else None

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
        self.gone()
        if self.transport is not None:
            self.transport = None
            self.inner.connection_lost(exc)

    def gone(self) -> None:
        """The connection is closed (or never got through its TLS handshake)."""
        for timer in (self._timer, self._stall):
            if timer is not None:
                timer.cancel()
        self._timer = self._stall = None
        self._early.clear()
        self.guard.forget(self)

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
        if self.active or self.raw is None:
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
        if self.raw is None:
            return
        sock = self.raw.get_extra_info("socket")
        if sock is not None:
            # Linger 0: reset now, dropping what the kernel holds too; a plain close would
            # leave it probing a zero window for minutes.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.raw.abort()

    def close(self, why: str) -> None:
        """Close the TCP connection (once it has written what it already buffered).

        Under TLS no close_notify is awaited: a client that never answers one would keep the
        descriptor for asyncio's TLS shutdown timeout after the guard stopped counting it.
        """
        if self.raw is not None and not self.raw.is_closing():
            log.debug("closing connection from %s: %s", self.peer(), why)
            self.raw.close()

    def peer(self) -> str:
        """The client's address, for log lines."""
        peer = self.raw.get_extra_info("peername") if self.raw else None
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"


class ConnectionGuard:
    """Bounds open connections; past the bound the longest-waiting idle one is closed."""

    def __init__(self, limits: ConnectionLimits, tls: ssl.SSLContext | None = None) -> None:
        self.limits = limits
        self.tls = tls
        if tls is not None:
            sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
        # aiohttp's protocol factory (its low-level server), set once the runner is set up.
        self.protocol_factory: Callable[[], asyncio.Protocol] | None = None
        self.loop = asyncio.get_running_loop()
        # Counted connections by aiohttp's protocol (what a request knows), handshakes included.
        self.open: dict[asyncio.BaseProtocol, GuardedProtocol] = {}
        # Connections not handling a request, longest waiting first (dicts keep order).
        self.idle: dict[GuardedProtocol, None] = {}
        # The tasks handling requests (one per request), so a shutdown can cancel them.
        self.requests: set[asyncio.Task[Any]] = set()
        self.handshakes: set[asyncio.Task[None]] = set()
        self.hurried = False
        self.evicted = 0
        self.refused = 0
        self.stalled = 0
        self.full = Throttled()
        self.write_timeouts = Throttled()

    def __call__(self) -> GuardedProtocol:
        """The protocol factory for ``loop.create_server`` (called at accept)."""
        assert self.protocol_factory is not None
        return GuardedProtocol(self, self.protocol_factory(), self.tls)

    def hurry(self) -> None:
        """Signal handler during the drain: cancel in-flight requests instead of waiting."""
        if not self.hurried:
            self.hurried = True
            log.info("signal received again: cancelling %d in-flight requests", len(self.requests))
            for task in self.requests:
                task.cancel()

    def admit(self, conn: GuardedProtocol) -> bool:
        """Count a new connection in; at the bound close an idle one, or this one if none is."""
        if len(self.open) >= self.limits.max_connections:
            victim = next(iter(self.idle), None)
            if victim is None:
                self.refused += 1
                self._warn_full("refused a new connection: every connection has a request")
                conn.close("every connection has a request in progress")
                return False
            self.evicted += 1
            self._warn_full("closed the longest idle connection to admit a new one")
            self.forget(victim)
            victim.close("idle at the connection limit")
        self.open[conn.inner] = conn
        self.idle[conn] = None
        return True

    def start_tls(self, conn: GuardedProtocol, raw: asyncio.Transport, tls: ssl.SSLContext) -> None:
        """Run the TLS handshake of an admitted connection; aiohttp gets it once it is done."""
        task = self.loop.create_task(self._handshake(conn, raw, tls))
        self.handshakes.add(task)
        task.add_done_callback(self.handshakes.discard)

    async def _handshake(
        self, conn: GuardedProtocol, raw: asyncio.Transport, tls: ssl.SSLContext
    ) -> None:
        try:
            # The guard's header timer closes a stalled handshake; asyncio's own is a backstop.
            secure = await self.loop.start_tls(
                raw,
                conn,
                tls,
                server_side=True,
                ssl_handshake_timeout=self.limits.read_header_timeout + 1,
            )
        except asyncio.CancelledError:
            conn.gone()
            raise
        except Exception as exc:  # SSL errors, resets, the timeout: the connection is gone
            log.debug("TLS handshake with %s failed: %s", conn.peer(), exc)
            secure = None
        # None when the connection was closed during the handshake (evicted or timed out).
        if secure is None or raw.is_closing():
            conn.gone()
            return
        conn.connect(secure)

    def forget(self, conn: GuardedProtocol) -> None:
        """Count a connection out (closed, or being closed)."""
        if self.open.get(conn.inner) is conn:
            del self.open[conn.inner]
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
        if conn.active or self.open.get(conn.inner) is not conn:
            return
        self.idle[conn] = None
        if conn.partial:  # part of the next request is here already (pipelined)
            conn.wait("headers", self.limits.read_header_timeout)
        else:
            conn.wait("request", self.limits.idle_timeout)

    def middleware(self) -> Middleware:
        """The outermost middleware: a connection is busy until its request's task is done."""

        @web.middleware
        async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
            conn = self.open.get(request.protocol)
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
