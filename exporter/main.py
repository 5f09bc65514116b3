"""Entry point: parse flags, check collectors' tools, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import psutil

from collectors.registry import CollectorSpec, load_all
from collectors.toolkit.runner import CommandRunner
from exporter import __version__, gc_pauses, invalidate_cli
from exporter.app import create_app
from exporter.auth import WebSecurity
from exporter.cli import enabled_collectors, explicit_collectors, parse_flags, settings_from_args
from exporter.keys import CACHE, PROBES
from exporter.logs import setup_logging
from exporter.probe_config import ProbeConfig, ProbeConfigError, load_probe_config
from exporter.reaper import Reaper
from exporter.script_config import ScriptConfigError, load_scripts
from exporter.serve import ListenError, listen_sockets, serve
from exporter.settings import CollectorSettings, Settings
from exporter.webconfig import WebConfigError

log = logging.getLogger("hwcache_exporter")

GIL_SWITCH_INTERVAL = 0.001  # seconds; CPython's default is 0.005


def missing_tools(
    names: Sequence[str],
    explicit: set[str],
    registry: dict[str, CollectorSpec],
    runner: CommandRunner,
) -> list[tuple[str, str]]:
    """Default collectors whose tool is absent, with the reason; fail for explicitly enabled ones."""
    skipped = []
    for name in names:
        tool = registry[name].tool
        if tool is None or runner.which(tool):
            continue
        if name in explicit:
            raise SystemExit(
                f"collector {name} was enabled with --collector.{name} but {tool!r} "
                "is not installed (not found on PATH)"
            )
        skipped.append((name, f"{tool} is not installed"))
    return skipped


def log_skipped(skipped: Sequence[tuple[str, str]]) -> None:
    """One info line per collector left out at startup."""
    for name, reason in skipped:
        log.info("collector %s skipped: %s", name, reason)


def drop_missing_tools(
    names: list[str], explicit: set[str], registry: dict[str, CollectorSpec], runner: CommandRunner
) -> list[str]:
    """Skip (and log) default collectors whose tool is absent; fail for explicitly enabled ones."""
    skipped = missing_tools(names, explicit, registry, runner)
    log_skipped(skipped)
    return [name for name in names if name not in dict(skipped)]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the exporter; a startup error is one log line (in --log.format) and exit status 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["invalidate"]:  # the client subcommand; every other argv is the exporter's
        raise SystemExit(invalidate_cli.main(argv[1:]))
    registry = load_all()
    args = parse_flags(registry, argv)
    setup_logging(args.log_level, args.log_format)
    try:
        run(args, registry)
    except SystemExit as exc:
        if not isinstance(exc.code, str):
            raise
        log.error("%s", exc.code)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def startup_settings(
    args: argparse.Namespace, registry: dict[str, CollectorSpec], runner: CommandRunner
) -> Settings:
    """Settings from the flags; default collectors whose tool is missing go to ``skipped``."""
    names = enabled_collectors(args, registry)
    skipped = missing_tools(names, explicit_collectors(args, registry), registry, runner)
    names = [name for name in names if name not in dict(skipped)]
    settings = settings_from_args(args, registry, names, skipped)
    collectors = (*settings.collectors, *script_collectors(args, registry))
    return replace(settings, collectors=collectors, probe=probe_config(args, runner))


def probe_config(args: argparse.Namespace, runner: CommandRunner) -> ProbeConfig | None:
    """The remote-target modules of ``--config.file`` (``None`` without one)."""
    if not args.probe_config:
        return None
    try:
        config = load_probe_config(Path(args.probe_config))
    except ProbeConfigError as exc:
        raise SystemExit(f"--config.file: {exc}") from None
    ipmi = sorted(name for name, m in config.modules.items() if m.driver == "ipmi")
    if ipmi and runner.which("ipmitool") is None:
        raise SystemExit(
            f"--config.file: module {ipmi[0]!r} (driver ipmi) needs ipmitool, "
            "which is not installed (not on PATH)"
        )
    return config


def script_collectors(
    args: argparse.Namespace, registry: dict[str, CollectorSpec]
) -> list[CollectorSettings]:
    """The scripts of ``--collector.script.config``, each a cache entry of its own."""
    if not args.script_config:
        return []
    try:
        scripts = load_scripts(Path(args.script_config), registry)
    except ScriptConfigError as exc:
        raise SystemExit(f"--collector.script.config: {exc}") from None
    return [
        CollectorSettings(s.name, s.interval, s.timeout, s.script.fingerprint(), s.script)
        for s in scripts
    ]


def run(args: argparse.Namespace, registry: dict[str, CollectorSpec]) -> None:
    """Check everything, listen, then start the collectors and serve until stopped."""
    runner = CommandRunner()
    settings = startup_settings(args, registry, runner)
    psutil.PROCFS_PATH = str(settings.procfs)
    try:
        security = WebSecurity.from_file(settings.web_config_file)
    except WebConfigError as exc:
        raise SystemExit(f"--web.config.file: {exc}") from None
    # Listening before anything starts: a bind failure exits at once, with no tool running.
    try:
        sockets = listen_sockets(settings.listen_address)
    except ListenError as exc:
        raise SystemExit(str(exc)) from None
    app = create_app(settings, runner=runner, security=security)
    gc_pauses.install(app[CACHE], *([app[PROBES].cache] if PROBES in app else []))
    # Targets' families are small and evicted targets leave the cache: no reaper there.
    app[CACHE].on_change(Reaper().changed)
    # Render and refresh threads hold the GIL for seconds per 100k-sample change: the loop
    # waits up to one switch interval each time it needs it (measured: p99 of /-/healthy
    # 35-46 ms at CPython's 5 ms, 21-25 ms at 1 ms, refreshes no slower).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    log_skipped(settings.skipped)
    log.info(
        "starting hwcache-exporter %s on %s with collectors: %s",
        __version__,
        settings.listen_address,
        ", ".join(c.name for c in settings.collectors) or "(none)",
    )
    asyncio.run(
        serve(app, sockets, on_reload=security.schedule_reload, ssl_context=security.ssl_context)
    )


if __name__ == "__main__":
    main(sys.argv[1:])
