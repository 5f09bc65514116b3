"""One client connection: counted from accept, its timers, TLS set up, then aiohttp's protocol."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from exporter.connections import ConnectionGuard

log = logging.getLogger(__name__)

# asyncio's default is 64 KiB; said explicitly because it bounds what one slow reader costs.
WRITE_BUFFER_HIGH = 64 * 1024


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
        self.active = 0  # requests being handled, until their response is written
        self.task: asyncio.Task[Any] | None = None  # the request task, for a hurried shutdown
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
        """Forward; the first bytes of a request start the header timer."""
        # After an idle spell, or after a whole request aiohttp answered itself (404, 405):
        # its header timer still runs, and must not end the next request's early.
        if not self.active and self.between_requests:
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

    @property
    def between_requests(self) -> bool:
        """Bytes came, and the last of them ended a header block: no next request begun."""
        return bool(self._tail) and not self.partial

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
        if self.waiting_for == "headers" and self.between_requests:
            # The headers came in time and aiohttp answered them itself (404, 405): idle now.
            self.wait("request", self.guard.limits.idle_timeout)
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


def connection_of(request: web.BaseRequest) -> GuardedProtocol | None:
    """The guarded connection ``request`` came on (None without the guard: test clients)."""
    transport = request.transport
    conn = transport.get_protocol() if transport is not None else None
    return conn if isinstance(conn, GuardedProtocol) else None


class Busy:
    """Inside the block the request's connection counts as busy: no timer, no eviction, and
    a hurried shutdown cancels the request (nothing happens without the guard)."""

    def __init__(self, request: web.BaseRequest) -> None:
        self.conn = connection_of(request)

    def __enter__(self) -> None:
        if self.conn is not None:
            self.conn.guard.request_started(self.conn)

    def __exit__(self, *exc_info: object) -> None:
        if self.conn is not None:
            self.conn.guard.request_done(self.conn)
