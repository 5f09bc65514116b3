"""Serve the app until SIGTERM/SIGINT: listen, notify readiness, shut down gracefully."""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import signal
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from aiohttp import web

from exporter import sdnotify
from exporter.address import parse_listen_address
from exporter.connections import ConnectionGuard, ConnectionLimits, Throttled
from exporter.keys import SETTINGS
from exporter.limits import PARSER_LIMITS

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 10.0
BACKLOG = 128
_HINTS = {
    errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE",
    errno.EADDRNOTAVAIL: "no such address on this host",
}
# File descriptors kept for everything but client connections: the listeners, log, tools'
# pipes, sysfs reads, and a burst of up to BACKLOG accepts before idle connections are closed.
FD_RESERVE = 256
ACCEPT_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
UNAVAILABLE = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT})


# (host, port) or, for IPv6 from getaddrinfo, (host, port, flowinfo, scope_id).
SockAddr = tuple[Any, ...]


class ListenError(Exception):
    """The listen address cannot be used; the message names it and the cause."""


def host_port(address: object) -> str:
    """A socket address as ``127.0.0.1:9847`` or ``[::]:9847``."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


def split_listen_address(address: str) -> tuple[str | None, int]:
    """``:9847``, ``127.0.0.1:9847``, ``localhost:9847`` or ``[::1]:9847`` into host and port."""
    try:
        return parse_listen_address(address)
    except ValueError as exc:
        raise ListenError(f"--web.listen-address={address}: {exc}") from None


def listen_sockets(address: str) -> list[socket.socket]:
    """Bind and listen on ``address`` now, so a bad address fails before anything starts."""
    host, port = split_listen_address(address)
    if host is None:
        return [_wildcard(address, port)]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        cause = exc.strerror or str(exc)
        raise ListenError(
            f"cannot listen on {address}: cannot resolve {host}: {cause[:1].lower()}{cause[1:]}"
        ) from None
    sockets: list[socket.socket] = []
    unavailable: list[ListenError] = []
    try:
        for family, sockaddr in dict.fromkeys((info[0], info[4]) for info in infos):
            try:
                sockets.append(_bind(family, sockaddr))
            except OSError as exc:
                # A name may resolve to an address this host lacks (::1 with IPv6 disabled).
                if exc.errno not in UNAVAILABLE:
                    raise _failure(address, sockaddr, exc) from None
                unavailable.append(_failure(address, sockaddr, exc))
        if not sockets:
            raise unavailable[0]
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    for error in unavailable:
        log.warning("%s; listening on its other addresses", error)
    return sockets


def _wildcard(address: str, port: int) -> socket.socket:
    """``:port``: one dual-stack IPv6 socket (IPv4 too), or IPv4 only on hosts without IPv6."""
    if socket.has_dualstack_ipv6():
        try:
            return _bind(socket.AF_INET6, ("::", port), dual_stack=True)
        except OSError as exc:
            if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                raise _failure(address, ("::", port), exc) from None
    try:
        return _bind(socket.AF_INET, ("0.0.0.0", port))
    except OSError as exc:
        raise _failure(address, ("0.0.0.0", port), exc) from None


def _bind(family: int, sockaddr: SockAddr, dual_stack: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _failure(address: str, sockaddr: SockAddr, exc: OSError) -> ListenError:
    """``cannot listen on :9847 ([::]:9847): address already in use``."""
    where = host_port(sockaddr)
    named = address if where == address else f"{address} ({where})"
    cause = exc.strerror or str(exc)
    hint = _HINTS.get(exc.errno or 0)
    if hint and not (exc.errno == errno.EACCES and sockaddr[1] >= 1024):
        cause += f"; {hint}"
    return ListenError(f"cannot listen on {named}: {cause[:1].lower()}{cause[1:]}")


def connection_budget(max_connections: int) -> int:
    """Raise the soft fd limit for ``max_connections`` if needed; the bound the limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        raised = need if hard == resource.RLIM_INFINITY else min(hard, need)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit to %d: %s", raised, exc)
    if soft == resource.RLIM_INFINITY or soft >= need:
        log.info("open files limit %s, --web.max-connections=%d", soft, max_connections)
        return max_connections
    allowed = max(soft - FD_RESERVE, soft // 4)
    log.warning(
        "open files limit %d is too low for --web.max-connections=%d (needs %d); serving at "
        "most %d connections: raise LimitNOFILE= in the unit or ulimit -n",
        soft,
        max_connections,
        need,
        allowed,
    )
    return allowed


def accept_error_handler(
    throttled: Throttled,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """A loop exception handler: out-of-resource accept errors become a rate-limited line."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in ACCEPT_ERRORS:
            # asyncio pauses accepting for a second and retries; a traceback each time (a
            # hundred per second) would flood the journal.
            throttled.warn("cannot accept connections: %s; retrying", exc.strerror or exc)
            return
        loop.default_exception_handler(context)

    return handle


class GuardedSite(web.SockSite):
    """A ``SockSite`` whose connections go through a ``ConnectionGuard``."""

    def __init__(
        self,
        runner: web.AppRunner,
        sock: socket.socket,
        guard: ConnectionGuard,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        super().__init__(runner, sock, ssl_context=ssl_context, backlog=BACKLOG)
        self.sock, self.guard = sock, guard

    async def start(self) -> None:
        """Register with the runner and serve ``sock`` with the guard as protocol factory."""
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        # No ssl= here: the guard does TLS itself, so it holds every connection from accept.
        # BaseSite keeps the server in _server: the runner reads addresses and stops it there.
        self._server = await loop.create_server(self.guard, sock=self.sock, backlog=BACKLOG)


async def serve(
    app: web.Application,
    sockets: Sequence[socket.socket],
    on_reload: Callable[[], None] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Run ``app`` on listening ``sockets``; SIGTERM/SIGINT stop it, SIGHUP calls ``on_reload``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Before the collectors start: a SIGTERM during startup then also shuts down gracefully.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_reload is not None:
        loop.add_signal_handler(signal.SIGHUP, on_reload)
    loop.set_exception_handler(accept_error_handler(Throttled()))
    limits = connection_limits(app)
    limits = replace(limits, max_connections=connection_budget(limits.max_connections))
    # shutdown_timeout belongs on the runner (on a site it is deprecated since aiohttp 3.9).
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        keepalive_timeout=limits.idle_timeout,
        **PARSER_LIMITS,
    )
    guard = ConnectionGuard(limits, ssl_context)
    try:
        await runner.setup()
        assert runner.server is not None
        guard.protocol_factory = runner.server
        for sock in sockets:
            await GuardedSite(runner, sock, guard, ssl_context).start()
        addresses = ", ".join(map(host_port, runner.addresses))
        log.info("listening on %s (TLS %s)", addresses, "enabled" if ssl_context else "disabled")
        # Only now: serving, and SIGTERM is handled gracefully (Type=notify in the unit).
        sdnotify.ready(f"listening on {addresses}")
        await stop.wait()
        sdnotify.stopping("shutting down: finishing in-flight scrapes")
        log.info("shutting down: finishing in-flight requests (at most %gs)", SHUTDOWN_TIMEOUT)
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        # Still ours during the drain: a second signal cuts it short, and the cleanup below
        # (tools' process groups killed, snapshot written) still runs; no KeyboardInterrupt.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, guard.hurry)
        try:
            await runner.cleanup()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            loop.set_exception_handler(None)
    log.info("stopped")


def connection_limits(app: web.Application) -> ConnectionLimits:
    """The connection flags from the app's settings (defaults without settings)."""
    settings = app.get(SETTINGS)
    if settings is None:
        return ConnectionLimits()
    return ConnectionLimits(
        settings.max_connections,
        settings.read_header_timeout,
        settings.idle_timeout,
        settings.write_timeout,
    )
