"""Client connections, below aiohttp: a bound on their number, header/idle/write timeouts.

Each connection is a ``GuardedProtocol`` (exporter/client_connection.py); the guard counts
them, closes the longest waiting one at the bound, runs TLS handshakes and tracks requests.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from asyncio import sslproto
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from exporter.client_connection import Busy, GuardedProtocol
from exporter.limits import write_response

log = logging.getLogger(__name__)

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
            tasks = [conn.task for conn in self.open.values() if conn.task is not None]
            log.info("signal received again: cancelling %d in-flight requests", len(tasks))
            for task in tasks:
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
        """A request is being handled (by this task): no timer and no eviction until its
        response is written."""
        conn.active += 1
        task = asyncio.current_task()
        if task is not None:
            conn.task = task
            if self.hurried:  # began after the second signal cancelled the others
                task.cancel()
        self.idle.pop(conn, None)

    def request_done(self, conn: GuardedProtocol) -> None:
        """A response was written (or abandoned): idle until the next request."""
        conn.active -= 1
        if conn.active:
            return
        conn.task = None
        if self.open.get(conn.inner) is not conn:
            return
        self.idle[conn] = None
        if conn.partial:  # part of the next request is here already (pipelined)
            conn.wait("headers", self.limits.read_header_timeout)
        else:
            conn.wait("request", self.limits.idle_timeout)


def tracked(handler: Handler) -> Handler:
    """``handler`` with its connection busy until the response is written, which it does.

    A route wrapper rather than a middleware: aiohttp's middleware chain and a done callback
    on the request's task cost more than the response-cache hit they would wrap. Requests
    aiohttp answers itself (404, 405) are not tracked; ``GuardedProtocol`` lets them be.
    """

    @functools.wraps(handler)
    async def track(request: web.Request) -> web.StreamResponse:
        with Busy(request):
            return await write_response(request, await handler(request))

    return track
