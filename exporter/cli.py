"""Command-line flags in Prometheus style: parse them and turn them into ``Settings``."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from collectors.registry import CollectorSpec
from collectors.toolkit.durations import format_duration, parse_duration
from exporter import __version__
from exporter.flagparser import DURATION_HELP, FlagParser, HelpFormatter
from exporter.flags import add_flags
from exporter.settings import CollectorSettings, Settings

DOCS_ROOT = Path(__file__).resolve().parents[1]


def build_parser(registry: dict[str, CollectorSpec]) -> FlagParser:
    """All flags; per-collector ones come from the registry."""
    parser = FlagParser(
        prog="hwcache-exporter",
        usage="%(prog)s [flags]",
        description="Prometheus exporter for slow hardware data, cached per collector.",
        epilog=f"{DURATION_HELP} Boolean flags are turned off with their --no- form "
        "(--flag=true and --flag=false work too).",
        formatter_class=HelpFormatter,
        # Abbreviations of dotted flags are surprising (--web.listen would be accepted).
        allow_abbrev=False,
        add_help=False,
    )
    add_flags(parser, registry)
    return parser


def parse_flags(
    registry: dict[str, CollectorSpec], argv: Sequence[str] | None
) -> argparse.Namespace:
    """Parse the command line; ``--version`` prints and exits once every flag checked out."""
    args = build_parser(registry).parse_args(argv)
    if args.version:
        sys.stdout.write(f"hwcache-exporter {__version__}\n")
        raise SystemExit(0)
    return args


def explicit_collectors(args: argparse.Namespace, registry: dict[str, CollectorSpec]) -> set[str]:
    """Collectors the user enabled by name (a missing tool is then a startup error)."""
    return {name for name in registry if getattr(args, f"enable_{name}") is True}


def enabled_collectors(args: argparse.Namespace, registry: dict[str, CollectorSpec]) -> list[str]:
    """Apply defaults, ``--collector.disable-defaults`` and per-collector switches."""
    names = []
    for name, spec in registry.items():
        choice = getattr(args, f"enable_{name}")
        default = spec.default_enabled and not args.disable_defaults
        if choice is True or (choice is None and default):
            names.append(name)
    return names


def checked_root(flag: str, value: str) -> Path:
    """A ``--path.*`` root, which must be an existing directory."""
    path = Path(value)
    if not value:
        raise SystemExit(f"{flag}=: empty path (no such directory)")
    if not path.exists():
        raise SystemExit(f"{flag}={value}: no such directory")
    if not path.is_dir():
        raise SystemExit(f"{flag}={value}: not a directory")
    return path


def checked_cache_dir(value: str) -> Path:
    """``--cache.dir``: made if missing (its parent must exist), and writable."""
    path = Path(value)
    try:
        path.mkdir(mode=0o700, exist_ok=True)
    except FileNotFoundError:
        raise SystemExit(f"--cache.dir={value}: no such directory: {path.parent}") from None
    except FileExistsError:
        raise SystemExit(f"--cache.dir={value}: not a directory") from None
    except OSError as exc:
        raise SystemExit(f"--cache.dir={value}: cannot create it: {exc.strerror}") from None
    if not path.is_dir():
        raise SystemExit(f"--cache.dir={value}: not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SystemExit(f"--cache.dir={value}: not writable: {exc.strerror}") from None
    return path


def settings_from_args(
    args: argparse.Namespace,
    registry: dict[str, CollectorSpec],
    names: Sequence[str],
    skipped: Sequence[tuple[str, str]] = (),
) -> Settings:
    """Turn parsed flags into ``Settings`` for the enabled collectors (and the skipped ones)."""
    collectors = []
    for name in names:
        spec = registry[name]
        options = {o.name: getattr(args, f"opt_{name}_{o.name}") for o in spec.options}
        timeout = getattr(args, f"timeout_{name}")
        collectors.append(
            CollectorSettings(name, getattr(args, f"interval_{name}"), timeout, options)
        )
    return Settings(
        collectors=tuple(collectors),
        listen_address=args.listen,
        telemetry_path=args.telemetry_path,
        procfs=checked_root("--path.procfs", args.procfs),
        sysfs=checked_root("--path.sysfs", args.sysfs),
        rootfs=checked_root("--path.rootfs", args.rootfs),
        response_cache=args.response_cache,
        response_cache_max_entries=args.rc_entries,
        response_cache_max_bytes=args.rc_bytes,
        response_cache_ttl=args.rc_ttl,
        scrape_timeout_offset=args.timeout_offset,
        max_scrape_wait=args.max_wait,
        error_retry_interval=args.error_retry,
        invalidate_min_interval=args.invalidate_min,
        invalidate_enabled=args.invalidate_enabled,
        max_requests=args.max_requests,
        max_connections=args.max_connections,
        read_header_timeout=args.read_header_timeout,
        idle_timeout=args.idle_timeout,
        write_timeout=args.write_timeout,
        web_config_file=Path(args.web_config_file) if args.web_config_file else None,
        cache_dir=checked_cache_dir(args.cache_dir) if args.cache_dir else None,
        skipped=tuple(skipped),
    )


def describe_defaults(registry: dict[str, CollectorSpec]) -> str:
    """A Markdown table of collectors for the README (kept in sync by a test)."""
    lines = [
        "| collector | default | interval | timeout | tool | what |",
        "|---|---|---|---|---|---|",
    ]
    for spec in registry.values():
        doc = f"docs/collectors/{spec.name}.md"
        name = f"[`{spec.name}`]({doc})" if (DOCS_ROOT / doc).exists() else f"`{spec.name}`"
        lines.append(
            f"| {name} | {'enabled' if spec.default_enabled else 'disabled'} | "
            f"{format_duration(parse_duration(spec.interval))} | "
            f"{format_duration(parse_duration(spec.timeout))} | "
            f"{spec.tool or '-'} | {spec.description} |"
        )
    return "\n".join(lines)
