"""``hwcache-exporter invalidate``: ask a running exporter to refresh collectors (for hooks)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from exporter.flagparser import FlagParser, duration

# Exit statuses (sysexits.h where one fits): hooks and scripts can tell them apart.
OK = 0
ERROR = 1  # refused (unknown collector, auth, disabled), unreachable, bad credentials file
USAGE = 2
RATE_LIMITED = 75  # EX_TEMPFAIL: a forced refresh of one of them happened too recently

DEFAULT_URL = "http://127.0.0.1:9847"
URL_ENV = "HWCACHE_EXPORTER_URL"
CREDENTIALS_ENV = "HWCACHE_EXPORTER_CREDENTIALS_FILE"


def build_parser() -> FlagParser:
    """The subcommand's flags."""
    parser = FlagParser(
        prog="hwcache-exporter invalidate",
        description="Expire collectors' cached data in a running exporter "
        "(POST /cache/invalidate); for udev, smartd and mdadm hooks.",
        epilog=f"Exit status: {OK} done, {ERROR} refused or unreachable, {USAGE} usage error, "
        f"{RATE_LIMITED} rate limited (a forced refresh was too recent; the message says "
        "when to retry).",
        allow_abbrev=False,
    )
    add = parser.add_argument
    add(
        "--collector",
        dest="collectors",
        action="append",
        required=True,
        metavar="NAME",
        help="collector (or script) to invalidate; repeat for several",
    )
    add(
        "--url",
        default=os.environ.get(URL_ENV) or DEFAULT_URL,
        help=f"the exporter's base URL (default: ${URL_ENV} or {DEFAULT_URL})",
    )
    add(
        "--refresh",
        choices=("now", "next"),
        default="next",
        help="collect again now, or at the next scrape (default: next)",
    )
    add(
        "--credentials-file",
        default=os.environ.get(CREDENTIALS_ENV) or None,
        metavar="FILE",
        help=f"file holding user:password for basic auth (default: ${CREDENTIALS_ENV})",
    )
    add(
        "--if-enabled",
        action="store_true",
        help="leave out collectors the exporter does not run (hooks name every one they "
        "may concern); nothing left is success",
    )
    add("--ca-file", default=None, metavar="FILE", help="CA certificate to verify https with")
    add("--timeout", type=duration, default="10s", metavar="DURATION", help="request timeout")
    return parser


def credentials(path: str) -> str:
    """The Authorization header value from a ``user:password`` file (first line)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--credentials-file {path}: {exc}") from None
    line = text.splitlines()[0] if text else ""
    if ":" not in line or not line.split(":", 1)[0]:
        raise ValueError(f"--credentials-file {path}: expected one line user:password")
    return "Basic " + base64.b64encode(line.encode()).decode()


def enabled(args: argparse.Namespace, context: ssl.SSLContext | None) -> set[str]:
    """The collectors the exporter runs (from /cache/stats)."""
    req = urllib.request.Request(f"{args.url.rstrip('/')}/cache/stats")
    if args.credentials_file:
        req.add_header("Authorization", credentials(args.credentials_file))
    with urllib.request.urlopen(req, timeout=args.timeout, context=context) as resp:
        return set(json.loads(resp.read())["collectors"])


def request(args: argparse.Namespace) -> urllib.request.Request:
    """The POST request for ``args``."""
    query = urllib.parse.urlencode(
        [("refresh", args.refresh)] + [("collector", c) for c in args.collectors]
    )
    url = f"{args.url.rstrip('/')}/cache/invalidate?{query}"
    req = urllib.request.Request(url, data=b"", method="POST")
    if args.credentials_file:
        req.add_header("Authorization", credentials(args.credentials_file))
    return req


def reason(body: bytes) -> str:
    """The exporter's JSON error message, else the start of the body."""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip()[:200]


def main(argv: Sequence[str]) -> int:
    """Run the subcommand; returns the exit status."""
    args = build_parser().parse_args(list(argv))
    if not args.url.startswith(("http://", "https://")):
        print(
            f"{sys.argv[0]} invalidate: --url must start with http:// or https://", file=sys.stderr
        )
        return USAGE
    context = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else None
    try:
        if args.if_enabled:
            running = enabled(args, context)
            args.collectors = [c for c in args.collectors if c in running]
            if not args.collectors:
                print("nothing to invalidate: none of these collectors is enabled")
                return OK
        with urllib.request.urlopen(request(args), timeout=args.timeout, context=context) as resp:
            reply = json.loads(resp.read())
    except (ValueError, KeyError, TypeError) as exc:
        print(f"invalidate: {exc}", file=sys.stderr)
        return ERROR
    except urllib.error.HTTPError as exc:
        body = exc.read()
        if exc.code == 429:
            retry = exc.headers.get("Retry-After", "?")
            print(
                f"invalidate: rate limited: {reason(body)}; retry after {retry}s", file=sys.stderr
            )
            return RATE_LIMITED
        print(f"invalidate: {args.url} answered {exc.code}: {reason(body)}", file=sys.stderr)
        return ERROR
    except (OSError, ssl.SSLError) as exc:
        print(f"invalidate: cannot reach {args.url}: {exc}", file=sys.stderr)
        return ERROR
    names = ", ".join(reply.get("invalidated", args.collectors))
    print(f"invalidated {names} (refresh {reply.get('refresh', args.refresh)})")
    return OK
