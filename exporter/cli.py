"""Command-line flags in Prometheus style, derived from the collector registry."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from collectors.registry import CollectorSpec
from exporter import __version__
from exporter.durations import format_duration, parse_duration
from exporter.settings import CollectorSettings, Settings

DEFAULT_LISTEN = ":9847"
DOCS_ROOT = Path(__file__).resolve().parents[1]


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def build_parser(registry: dict[str, CollectorSpec]) -> argparse.ArgumentParser:
    """All flags; per-collector ones come from the registry."""
    parser = argparse.ArgumentParser(
        prog="hwcache-exporter",
        description="Prometheus exporter for slow hardware data, cached per collector.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--version", action="version", version=f"hwcache-exporter {__version__}")
    add("--web.listen-address", dest="listen", default=DEFAULT_LISTEN, help="host:port to bind")
    add("--web.telemetry-path", dest="telemetry_path", default="/metrics")
    add(
        "--web.response-cache",
        dest="response_cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="cache whole /metrics responses",
    )
    add("--web.response-cache.max-entries", dest="rc_entries", type=_positive_int, default=1000)
    add(
        "--web.response-cache.max-bytes",
        dest="rc_bytes",
        type=_positive_int,
        default=64 * 1024 * 1024,
    )
    add(
        "--web.response-cache.ttl",
        dest="rc_ttl",
        type=_duration,
        default="5s",
        help="longest life of a cached response (0 = until the data changes or expires)",
    )
    add(
        "--web.scrape-timeout-offset",
        dest="timeout_offset",
        type=_duration,
        default="500ms",
        help="subtracted from X-Prometheus-Scrape-Timeout-Seconds",
    )
    add(
        "--web.max-scrape-wait",
        dest="max_wait",
        type=_duration,
        default="10s",
        help="longest a scrape waits for a due refresh before serving stale data",
    )
    add(
        "--web.invalidate-min-interval",
        dest="invalidate_min",
        type=_duration,
        default="1m",
        help="minimum time between forced refreshes of one collector",
    )
    add(
        "--web.enable-invalidate",
        dest="invalidate_enabled",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="allow POST /cache/invalidate",
    )
    add(
        "--web.max-requests",
        dest="max_requests",
        type=_non_negative_int,
        default=40,
        help="maximum concurrent requests; more get 503 (0 = unlimited)",
    )
    add(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        help="exporter-toolkit web config (TLS, basic auth, headers); reloaded on SIGHUP",
    )
    add(
        "--collector.error-retry-interval",
        dest="error_retry",
        type=_duration,
        default="1m",
        help="retry a failed collector after this long (capped by its interval)",
    )
    add(
        "--collector.disable-defaults",
        dest="disable_defaults",
        action="store_true",
        help="enable only collectors named with --collector.<name>",
    )
    add("--path.procfs", dest="procfs", default="/proc")
    add("--path.sysfs", dest="sysfs", default="/sys")
    add("--path.rootfs", dest="rootfs", default="/")
    add("--log.level", dest="log_level", default="info", choices=["debug", "info", "warn", "error"])
    add("--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"])
    add(
        "--cache.dir",
        dest="cache_dir",
        default="",
        help="directory to persist the metric cache in for warm restarts (empty = off)",
    )
    for spec in registry.values():
        state = "enabled" if spec.default_enabled else "disabled"
        add(
            f"--collector.{spec.name}",
            dest=f"enable_{spec.name}",
            default=None,
            action=argparse.BooleanOptionalAction,
            help=f"{spec.description} (default: {state})",
        )
        add(
            f"--collector.{spec.name}.interval",
            dest=f"interval_{spec.name}",
            type=_duration,
            default=spec.interval,
            metavar="DURATION",
            help=f"refresh interval of {spec.name}",
        )
        add(
            f"--collector.{spec.name}.timeout",
            dest=f"timeout_{spec.name}",
            type=_duration,
            default=spec.timeout,
            metavar="DURATION",
            help=f"collection timeout of {spec.name}",
        )
        for option in spec.options:
            add(
                f"--collector.{spec.name}.{option.name}",
                dest=f"opt_{spec.name}_{option.name}",
                default=option.default,
                metavar="VALUE",
                help=option.help,
            )
    return parser


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


def settings_from_args(
    args: argparse.Namespace, registry: dict[str, CollectorSpec], names: Sequence[str]
) -> Settings:
    """Turn parsed flags into ``Settings`` for the given enabled collectors."""
    collectors = []
    for name in names:
        spec = registry[name]
        options = {o.name: getattr(args, f"opt_{name}_{o.name}") for o in spec.options}
        timeout = getattr(args, f"timeout_{name}")
        if timeout <= 0:
            raise SystemExit(f"--collector.{name}.timeout must be positive")
        collectors.append(
            CollectorSettings(name, getattr(args, f"interval_{name}"), timeout, options)
        )
    if not args.telemetry_path.startswith("/"):
        raise SystemExit("--web.telemetry-path must start with '/'")
    return Settings(
        collectors=tuple(collectors),
        listen_address=args.listen,
        telemetry_path=args.telemetry_path,
        procfs=Path(args.procfs),
        sysfs=Path(args.sysfs),
        rootfs=Path(args.rootfs),
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
        web_config_file=Path(args.web_config_file) if args.web_config_file else None,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
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
