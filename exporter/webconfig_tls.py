"""The web config's ``tls_server_config``: validation, certificate snapshots, SSL contexts."""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.webconfig_yaml import WebConfigError

TLS_KEYS = frozenset(
    {"cert", "key", "cert_file", "key_file", "client_ca", "client_ca_file", "client_auth_type"}
    | {"min_version", "max_version", "prefer_server_cipher_suites"}
)
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


def parse_tls(section: Mapping[str, Any], base: Path) -> TLSConfig | None:
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
