"""Load and validate ``--web.config.file`` (the exporter-toolkit format node_exporter uses)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from exporter.webconfig_tls import (
    TLS_KEYS,
    TLSConfig,
    build_ssl_context,
    load_cert_chain,
    parse_tls,
)
from exporter.webconfig_yaml import WebConfigError, parse_yaml

__all__ = [
    "TLSConfig",
    "WebConfig",
    "WebConfigError",
    "build_ssl_context",
    "load_cert_chain",
    "load_web_config",
]

TOP_KEYS = frozenset({"tls_server_config", "basic_auth_users", "http_server_config"})
HTTP_KEYS = frozenset({"headers", "http2"})
# exporter-toolkit keys this exporter cannot honour: refusing them beats silently ignoring them.
UNSUPPORTED = {
    "rate_limit": "use --web.max-requests",
    "tls_server_config.cipher_suites": "Python's ssl module uses OpenSSL's default suites",
    "tls_server_config.curve_preferences": "OpenSSL's default curves are used",
    "tls_server_config.client_allowed_sans": "restrict client certificates with client_ca_file",
}
# The headers exporter-toolkit allows, with their allowed values (None = any value).
ALLOWED_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
BCRYPT_HASH = re.compile(r"\$2[abxy]\$(?P<cost>\d\d)\$[./A-Za-z0-9]{53}")


@dataclass(frozen=True)
class WebConfig:
    """A validated web config: optional TLS, bcrypt users, extra response headers."""

    path: Path | None = None
    tls: TLSConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


def _section(data: Mapping[str, Any], name: str, allowed: frozenset[str]) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{name} must be a mapping")
    for key in value:
        full = f"{name}.{key}"
        if full in UNSUPPORTED:
            raise WebConfigError(
                f"{full} is not supported by hwcache-exporter: {UNSUPPORTED[full]}"
            )
        if key not in allowed:
            raise WebConfigError(f"unknown key {full!r}; allowed: {', '.join(sorted(allowed))}")
    return value


def _parse_users(value: Any) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError("basic_auth_users must be a mapping of user name to bcrypt hash")
    users = {}
    for user, hashed in value.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(f"basic_auth_users: invalid user name {user!r}")
        match = BCRYPT_HASH.fullmatch(hashed) if isinstance(hashed, str) else None
        if match is None or not 4 <= int(match["cost"]) <= 31:
            raise WebConfigError(
                f"basic_auth_users.{user}: not a bcrypt hash (expected $2b$<cost>$ + 53 characters,"
                " e.g. from `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
            )
        # The same salt and digest at the cheapest cost: bcrypt parses it in about a millisecond.
        try:
            bcrypt.checkpw(b"", f"{hashed[:4]}04{hashed[6:]}".encode())
        except ValueError as exc:
            raise WebConfigError(f"basic_auth_users.{user}: invalid bcrypt hash: {exc}") from None
        users[user] = hashed.encode()
    return users


def _parse_headers(section: Mapping[str, Any]) -> dict[str, str]:
    http2 = section.get("http2")
    if http2 is not None and not isinstance(http2, bool):
        raise WebConfigError("http_server_config.http2 must be true or false")
    value = section.get("headers")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError("http_server_config.headers must be a mapping")
    headers = {}
    for name, text in value.items():
        if name not in ALLOWED_HEADERS:
            raise WebConfigError(
                f"http_server_config.headers: header {name!r} can not be configured; "
                f"allowed: {', '.join(ALLOWED_HEADERS)}"
            )
        if not isinstance(text, str) or "\r" in text or "\n" in text:
            raise WebConfigError(f"http_server_config.headers.{name} must be a one-line string")
        allowed = ALLOWED_HEADERS[name]
        if allowed is not None and text not in allowed:
            raise WebConfigError(
                f"http_server_config.headers.{name}: invalid value {text!r}; "
                f"expected one of {', '.join(allowed)}"
            )
        headers[name] = text
    return headers


def load_web_config(path: Path) -> WebConfig:
    """Read, validate and snapshot ``path``; raise WebConfigError naming the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = parse_yaml(text)
        if data is None:
            return WebConfig(path)
        if not isinstance(data, dict):
            raise WebConfigError("the top level must be a mapping")
        for key in data:
            if key in UNSUPPORTED:
                raise WebConfigError(
                    f"{key} is not supported by hwcache-exporter: {UNSUPPORTED[key]}"
                )
            if key not in TOP_KEYS:
                raise WebConfigError(f"unknown key {key!r}; allowed: {', '.join(sorted(TOP_KEYS))}")
        base = path.parent  # relative file names are relative to the config file, as in Go
        tls = parse_tls(_section(data, "tls_server_config", TLS_KEYS), base)
        users = _parse_users(data.get("basic_auth_users"))
        headers = _parse_headers(_section(data, "http_server_config", HTTP_KEYS))
    except WebConfigError as exc:
        raise WebConfigError(f"{path}: {exc}") from None
    return WebConfig(path, tls, users, headers)
