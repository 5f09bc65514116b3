"""The flag definitions, grouped for --help; per-collector ones come from the registry."""

from __future__ import annotations

import argparse

from collectors.registry import CollectorSpec
from collectors.toolkit.durations import format_duration, parse_duration
from collectors.toolkit.options import CollectorOption, Flag
from exporter.flagparser import (
    BoolFlag,
    checked,
    duration,
    listen_address,
    non_negative_int,
    positive_duration,
    positive_int,
    url_path,
)

DEFAULT_LISTEN = ":9847"


def add_flags(parser: argparse.ArgumentParser, registry: dict[str, CollectorSpec]) -> None:
    """Add every flag in groups: general, web, framework, paths, logging, one per collector."""
    general = parser.add_argument_group("general")
    general.add_argument("-h", "--help", action="help", help="show this help and exit")
    # Acted on after parsing, so that an unknown flag next to it is still a usage error.
    general.add_argument("--version", action="store_true", help="print the version and exit")
    _web_flags(parser.add_argument_group("web server"))
    _framework_flags(parser.add_argument_group("collector framework"))
    paths = parser.add_argument_group("paths (roots for containers and tests)")
    for name, default, what in (
        ("procfs", "/proc", "procfs"),
        ("sysfs", "/sys", "sysfs"),
        ("rootfs", "/", "the root filesystem"),
    ):
        paths.add_argument(
            f"--path.{name}",
            dest=name,
            default=default,
            metavar="DIR",
            help=f"mount point of {what}; must be a directory",
        )
    logs = parser.add_argument_group("logging")
    logs.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        metavar="LEVEL",
        choices=["debug", "info", "warn", "error"],
        help="only log messages of this level or above: debug, info, warn, error",
    )
    logs.add_argument(
        "--log.format",
        dest="log_format",
        default="logfmt",
        metavar="FORMAT",
        choices=["logfmt", "json"],
        help="log line format: logfmt or json",
    )
    for spec in registry.values():
        _collector_flags(parser, spec)


def _canonical(text: str) -> str:
    return format_duration(parse_duration(text))


def _web_flags(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add(
        "--web.listen-address",
        dest="listen",
        type=listen_address,
        default=DEFAULT_LISTEN,
        metavar="ADDRESS",
        help="host:port to listen on; ':9847' is every interface (IPv4 and IPv6), "
        "'[::1]:9847' an IPv6 address",
    )
    add(
        "--web.telemetry-path",
        dest="telemetry_path",
        type=url_path,
        default="/metrics",
        metavar="PATH",
        help="path of the metrics endpoint",
    )
    add(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        metavar="FILE",
        help="exporter-toolkit web config (TLS, basic auth, headers); reloaded on SIGHUP",
    )
    add(
        "--web.max-requests",
        dest="max_requests",
        type=non_negative_int,
        default=40,
        metavar="N",
        help="maximum concurrent requests; more get 503 (0 = unlimited)",
    )
    add(
        "--web.max-connections",
        dest="max_connections",
        type=positive_int,
        default=512,
        metavar="N",
        help="maximum open client connections; past it the longest idle one is closed",
    )
    add(
        "--web.read-header-timeout",
        dest="read_header_timeout",
        type=positive_duration,
        default="10s",
        metavar="DURATION",
        help="time a client has to send a request's headers (and finish a TLS handshake)",
    )
    add(
        "--web.idle-timeout",
        dest="idle_timeout",
        type=positive_duration,
        default="75s",
        metavar="DURATION",
        help="how long a keep-alive connection may wait for its next request",
    )
    add(
        "--web.write-timeout",
        dest="write_timeout",
        type=positive_duration,
        default="30s",
        metavar="DURATION",
        help="close a connection whose client reads none of its response for this long",
    )
    add(
        "--web.scrape-timeout-offset",
        dest="timeout_offset",
        type=duration,
        default="500ms",
        metavar="DURATION",
        help="subtracted from X-Prometheus-Scrape-Timeout-Seconds",
    )
    add(
        "--web.max-scrape-wait",
        dest="max_wait",
        type=duration,
        default="10s",
        metavar="DURATION",
        help="longest a scrape waits for a due refresh before serving stale data",
    )
    add(
        "--web.response-cache",
        dest="response_cache",
        action=BoolFlag,
        default=True,
        help="cache whole /metrics responses",
    )
    add(
        "--web.response-cache.max-entries",
        dest="rc_entries",
        type=positive_int,
        default=1000,
        metavar="N",
        help="most responses the response cache holds",
    )
    add(
        "--web.response-cache.max-bytes",
        dest="rc_bytes",
        type=positive_int,
        default=64 * 1024 * 1024,
        metavar="BYTES",
        help="most bytes (bodies and keys) the response cache holds",
    )
    add(
        "--web.response-cache.ttl",
        dest="rc_ttl",
        type=duration,
        default="0s",
        metavar="DURATION",
        help="optional cap on the life of a cached response (0 = none: it is replayed until "
        "the data changes or expires)",
    )
    add(
        "--web.enable-invalidate",
        dest="invalidate_enabled",
        action=BoolFlag,
        default=True,
        help="allow POST /cache/invalidate",
    )
    add(
        "--web.invalidate-min-interval",
        dest="invalidate_min",
        type=duration,
        default="1m",
        metavar="DURATION",
        help="minimum time between forced refreshes of one collector",
    )


def _framework_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--collector.disable-defaults",
        dest="disable_defaults",
        action="store_true",
        help="enable only collectors named with --collector.<name>",
    )
    group.add_argument(
        "--collector.error-retry-interval",
        dest="error_retry",
        type=duration,
        default="1m",
        metavar="DURATION",
        help="retry a failed collector after this long (capped by its interval)",
    )
    group.add_argument(
        "--collector.script.config",
        dest="script_config",
        default="",
        metavar="FILE",
        help="YAML file of scripts to run as cached collectors (text exposition on stdout)",
    )
    group.add_argument(
        "--config.file",
        dest="probe_config",
        default="",
        metavar="FILE",
        help="YAML file of remote-target modules (Redfish BMCs) served at /probe",
    )
    group.add_argument(
        "--cache.dir",
        dest="cache_dir",
        default="",
        metavar="DIR",
        help="directory to persist the metric cache in for warm restarts (empty = off)",
    )


def _collector_flags(parser: argparse.ArgumentParser, spec: CollectorSpec) -> None:
    name = spec.name
    group = parser.add_argument_group(f"collector {name}")
    add = group.add_argument
    state = "enabled" if spec.default_enabled else "disabled"
    tool = f"; needs {spec.tool}" if spec.tool and spec.tool not in spec.description else ""
    # default None: tells "enabled by name" (a missing tool is then an error) from a default.
    add(
        f"--collector.{name}",
        dest=f"enable_{name}",
        default=None,
        action=BoolFlag,
        help=f"{spec.description}{tool} (default: {state})",
    )
    add(
        f"--collector.{name}.interval",
        dest=f"interval_{name}",
        type=duration,
        default=_canonical(spec.interval),
        metavar="DURATION",
        help=f"how long {name} data is cached before the next collection",
    )
    add(
        f"--collector.{name}.timeout",
        dest=f"timeout_{name}",
        type=positive_duration,
        default=_canonical(spec.timeout),
        metavar="DURATION",
        help=f"time limit of one {name} collection"
        + (" (its tool's process group is killed)" if spec.tool else ""),
    )
    for option in spec.options:
        _option_flag(
            group, f"--collector.{name}.{option.name}", f"opt_{name}_{option.name}", option
        )


def _option_flag(
    group: argparse._ArgumentGroup, flag: str, dest: str, option: CollectorOption
) -> None:
    """A collector option's flag; its kind checks (and canonicalises) the value at parse time."""
    kind = option.kind
    if isinstance(kind, Flag):
        default = kind.canonical(option.default)
        group.add_argument(
            flag, dest=dest, default=default, action=BoolFlag, as_text=True, help=option.help
        )
        return
    group.add_argument(
        flag,
        dest=dest,
        type=checked(kind.canonical),
        default=option.default,
        metavar=kind.metavar,
        help=option.help,
    )
