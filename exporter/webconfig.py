"""Load and validate ``--web.config.file`` (the exporter-toolkit format node_exporter uses)."""

from __future__ import annotations

import os
import re
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

TOP_KEYS = frozenset({"tls_server_config", "basic_auth_users", "http_server_config"})
TLS_KEYS = frozenset(
    {"cert", "key", "cert_file", "key_file", "client_ca", "client_ca_file", "client_auth_type"}
    | {"min_version", "max_version", "prefer_server_cipher_suites"}
)
HTTP_KEYS = frozenset({"headers", "http2"})
# exporter-toolkit keys this exporter cannot honour: refusing them beats silently ignoring them.
UNSUPPORTED = {
    "rate_limit": "use --web.max-requests",
    "tls_server_config.cipher_suites": "Python's ssl module uses OpenSSL's default suites",
    "tls_server_config.curve_preferences": "OpenSSL's default curves are used",
    "tls_server_config.client_allowed_sans": "restrict client certificates with client_ca_file",
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# client_auth_type -> verify mode; RequestClientCert never affects access in Go either
# (the certificate is neither verified nor required), so it maps to CERT_NONE.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Python's ssl module has no verify callback, so "require a certificate but do not verify it"
# cannot be expressed.
UNVERIFIED_CLIENT_AUTH = frozenset({"RequireAnyClientCert", "RequireClientCert"})
# The headers exporter-toolkit allows, with their allowed values (None = any value).
ALLOWED_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
BCRYPT_HASH = re.compile(r"\$2[abxy]\$(?P<cost>\d\d)\$[./A-Za-z0-9]{53}")


class WebConfigError(Exception):
    """The web config file is unreadable or invalid."""


@dataclass(frozen=True)
class TLSConfig:
    """Validated TLS settings; certificate and key are snapshotted as bytes."""

    cert_pem: bytes
    key_pem: bytes
    client_auth_type: str = "NoClientCert"
    client_ca_pem: str | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3

    def policy(self) -> tuple[object, ...]:
        """The settings that need a restart to change (everything but certificate and key)."""
        return (self.client_auth_type, self.client_ca_pem, self.min_version, self.max_version)


@dataclass(frozen=True)
class WebConfig:
    """A validated web config: optional TLS, bcrypt users, extra response headers."""

    path: Path | None = None
    tls: TLSConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (as Go's UnmarshalStrict does)."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise WebConfigError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


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


def _string(section: Mapping[str, Any], prefix: str, key: str) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise WebConfigError(f"{prefix}.{key} must be a non-empty string, got {value!r}")
    return value


def _read(base: Path, prefix: str, key: str, name: str) -> bytes:
    path = base / name
    try:
        return path.read_bytes()
    except OSError as exc:
        raise WebConfigError(f"cannot read {prefix}.{key} {str(path)!r}: {exc.strerror}") from None


def _pem(section: Mapping[str, Any], base: Path, inline: str, file_key: str) -> bytes | None:
    text = _string(section, "tls_server_config", inline)
    name = _string(section, "tls_server_config", file_key)
    if text is not None and name is not None:
        raise WebConfigError(f"tls_server_config: set only one of {inline} and {file_key}")
    if name is not None:
        return _read(base, "tls_server_config", file_key, name)
    return None if text is None else text.encode()


def _version(section: Mapping[str, Any], key: str, default: ssl.TLSVersion) -> ssl.TLSVersion:
    name = _string(section, "tls_server_config", key)
    if name is None:
        return default
    if name not in TLS_VERSIONS:
        raise WebConfigError(
            f"tls_server_config.{key}: unknown TLS version {name!r}; use {', '.join(TLS_VERSIONS)}"
        )
    return TLS_VERSIONS[name]


def _parse_tls(section: Mapping[str, Any], base: Path) -> TLSConfig | None:
    if not section:
        return None
    prefer = section.get("prefer_server_cipher_suites")
    if prefer is not None and not isinstance(prefer, bool):
        raise WebConfigError("tls_server_config.prefer_server_cipher_suites must be true or false")
    auth = _string(section, "tls_server_config", "client_auth_type") or "NoClientCert"
    if auth in UNVERIFIED_CLIENT_AUTH:
        raise WebConfigError(
            f"tls_server_config.client_auth_type {auth} (accept unverified client certificates) "
            "is not supported; use RequireAndVerifyClientCert with client_ca_file"
        )
    if auth not in CLIENT_AUTH:
        raise WebConfigError(
            f"tls_server_config.client_auth_type: invalid value {auth!r}; "
            f"use one of {', '.join(CLIENT_AUTH)}"
        )
    cert = _pem(section, base, "cert", "cert_file")
    key = _pem(section, base, "key", "key_file")
    ca = _pem(section, base, "client_ca", "client_ca_file")
    if cert is None:
        raise WebConfigError("tls_server_config: missing one of cert or cert_file")
    if key is None:
        raise WebConfigError("tls_server_config: missing one of key or key_file")
    verifies = CLIENT_AUTH[auth] != ssl.CERT_NONE
    if ca is not None and not verifies:
        raise WebConfigError(
            f"tls_server_config: client CAs are configured but client_auth_type is {auth}"
        )
    if ca is None and verifies:
        raise WebConfigError(f"tls_server_config: client_auth_type {auth} needs client_ca_file")
    tls = TLSConfig(
        cert,
        key,
        auth,
        None if ca is None else ca.decode("ascii", errors="replace"),
        _version(section, "min_version", ssl.TLSVersion.TLSv1_2),
        _version(section, "max_version", ssl.TLSVersion.TLSv1_3),
    )
    if tls.min_version > tls.max_version:
        raise WebConfigError("tls_server_config: min_version is higher than max_version")
    build_ssl_context(tls)  # proves certificate, key and CAs load
    return tls


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
        data = yaml.load(text, Loader=_StrictLoader)
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
        tls = _parse_tls(_section(data, "tls_server_config", TLS_KEYS), base)
        users = _parse_users(data.get("basic_auth_users"))
        headers = _parse_headers(_section(data, "http_server_config", HTTP_KEYS))
    except yaml.YAMLError as exc:
        raise WebConfigError(f"{path}: invalid YAML: {exc}") from None
    except WebConfigError as exc:
        raise WebConfigError(f"{path}: {exc}") from None
    return WebConfig(path, tls, users, headers)


def load_cert_chain(context: ssl.SSLContext, tls: TLSConfig) -> None:
    """Load the snapshotted certificate and key into ``context`` (also a live one)."""

    def no_passphrase() -> bytes:
        raise WebConfigError("the private key is encrypted; use an unencrypted key file")

    # load_cert_chain only takes file names; a private temporary copy makes the load atomic
    # with respect to the validated snapshot even if the real files change meanwhile.
    with tempfile.TemporaryDirectory(prefix="hwcache-tls-") as tmp:
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for name, data in ((cert_path, tls.cert_pem), (key_path, tls.key_pem)):
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        try:
            context.load_cert_chain(cert_path, key_path, password=no_passphrase)
        except ssl.SSLError as exc:
            raise WebConfigError(f"tls_server_config: cannot load certificate/key: {exc}") from None


def build_ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """A server SSLContext for ``tls``; raises WebConfigError for bad PEM data."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = tls.min_version
    context.maximum_version = tls.max_version
    load_cert_chain(context, tls)
    if tls.client_ca_pem is not None:
        try:
            context.load_verify_locations(cadata=tls.client_ca_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise WebConfigError(
                f"tls_server_config: no usable CA certificate in client CAs: {exc}"
            ) from None
    context.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    return context
