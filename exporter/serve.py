"""Serve the app until SIGTERM/SIGINT: listen, notify readiness, shut down gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable

from aiohttp import web

from exporter import sdnotify
from exporter.limits import PARSER_LIMITS

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 10.0


def host_port(address: object) -> str:
    """A socket address as ``127.0.0.1:9847`` or ``[::]:9847``."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


async def serve(
    app: web.Application,
    host: str | None,
    port: int,
    on_reload: Callable[[], None] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Run ``app`` on host:port; SIGTERM/SIGINT stop it, SIGHUP calls ``on_reload``."""
    # shutdown_timeout belongs on the runner (on TCPSite it is deprecated since aiohttp 3.9).
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        **PARSER_LIMITS,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    log.info(
        "listening on %s (TLS %s)",
        ", ".join(str(a) for a in runner.addresses),
        "enabled" if ssl_context is not None else "disabled",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_reload is not None:
        loop.add_signal_handler(signal.SIGHUP, on_reload)
    # Only now: listening, and SIGTERM is handled gracefully (Type=notify in the unit).
    sdnotify.ready(f"listening on {', '.join(map(host_port, runner.addresses))}")
    try:
        await stop.wait()
        sdnotify.stopping("shutting down: finishing in-flight scrapes")
        log.info("shutting down: finishing in-flight requests (at most %gs)", SHUTDOWN_TIMEOUT)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    log.info("stopped")
