"""Entry point: parse flags, check collectors' tools, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

import psutil

from collectors.registry import CollectorSpec, load_all
from exporter import __version__
from exporter.app import create_app
from exporter.auth import WebSecurity
from exporter.cli import build_parser, enabled_collectors, explicit_collectors, settings_from_args
from exporter.logs import setup_logging
from exporter.runner import CommandRunner
from exporter.serve import serve
from exporter.webconfig import WebConfigError

log = logging.getLogger("hwcache_exporter")


def split_listen_address(address: str) -> tuple[str | None, int]:
    """``:9847``, ``127.0.0.1:9847`` or ``[::1]:9847`` into host and port."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"--web.listen-address {address!r}: expected host:port, e.g. :9847")
    host = host.strip("[]")
    return (host or None), int(port)


def drop_missing_tools(
    names: list[str], explicit: set[str], registry: dict[str, CollectorSpec], runner: CommandRunner
) -> list[str]:
    """Skip default collectors whose tool is absent; fail for explicitly enabled ones."""
    kept = []
    for name in names:
        tool = registry[name].tool
        if tool is None or runner.which(tool):
            kept.append(name)
        elif name in explicit:
            raise SystemExit(
                f"collector {name} was enabled with --collector.{name} but {tool!r} "
                "is not installed (not found on PATH)"
            )
        else:
            log.info("collector %s skipped: %s is not installed", name, tool)
    return kept


def main(argv: Sequence[str] | None = None) -> None:
    """Run the exporter."""
    registry = load_all()
    args = build_parser(registry).parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    runner = CommandRunner()
    names = enabled_collectors(args, registry)
    names = drop_missing_tools(names, explicit_collectors(args, registry), registry, runner)
    settings = settings_from_args(args, registry, names)
    psutil.PROCFS_PATH = str(settings.procfs)
    host, port = split_listen_address(settings.listen_address)
    try:
        security = WebSecurity.from_file(settings.web_config_file)
    except WebConfigError as exc:
        raise SystemExit(f"hwcache-exporter: --web.config.file: {exc}") from None
    app = create_app(settings, runner=runner, security=security)
    log.info(
        "starting hwcache-exporter %s on %s with collectors: %s",
        __version__,
        settings.listen_address,
        ", ".join(names) or "(none)",
    )
    try:
        asyncio.run(
            serve(
                app,
                host,
                port,
                on_reload=security.schedule_reload,
                ssl_context=security.ssl_context,
            )
        )
    except OSError as exc:
        raise SystemExit(f"cannot listen on {settings.listen_address}: {exc}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
