"""Serve the app until SIGTERM/SIGINT: listen, notify readiness, shut down gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 10.0


async def serve(
    app: web.Application,
    host: str | None,
    port: int,
    on_reload: Callable[[], None] | None = None,
) -> None:
    """Run ``app`` on host:port; SIGTERM/SIGINT stop it, SIGHUP calls ``on_reload``."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await site.start()
    log.info("listening on %s", ", ".join(str(a) for a in runner.addresses))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_reload is not None:
        loop.add_signal_handler(signal.SIGHUP, on_reload)
    try:
        await stop.wait()
        log.info("shutting down: finishing in-flight requests (at most %gs)", SHUTDOWN_TIMEOUT)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    log.info("stopped")
