"""The listen address grammar: ``:PORT``, ``HOST:PORT``, ``IPv4:PORT`` or ``[IPv6]:PORT``."""

from __future__ import annotations

import ipaddress
import re

EXPECTED = "expected host:port, e.g. :9847, 127.0.0.1:9847, localhost:9847 or [::1]:9847"
_PORT = re.compile(r"[0-9]{1,5}")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_DOTTED = re.compile(r"[0-9.]+")


def parse_listen_address(address: str) -> tuple[str | None, int]:
    """Host (``None`` for every interface) and port; a ``ValueError`` says what is wrong."""
    host, sep, port = address.rpartition(":")
    if not sep or not _PORT.fullmatch(port):
        raise ValueError(EXPECTED)
    if not 0 < int(port) < 65536:
        raise ValueError(f"port {int(port)} is out of range (1-65535)")
    return _host(host), int(port)


def _host(host: str) -> str | None:
    if not host:
        return None
    if host.startswith("[") and host.endswith("]") and host.count("[") == host.count("]") == 1:
        inner = host[1:-1]
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise ValueError(f"{host} is not an IPv6 address; {EXPECTED}") from None
        return inner
    if ":" in host or "[" in host or "]" in host:
        raise ValueError(f"{host!r} is not a host (IPv6 goes in brackets); {EXPECTED}")
    if _DOTTED.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{host} is not an IPv4 address; {EXPECTED}") from None
        return host
    if not _HOSTNAME.fullmatch(host) or len(host) > 253:
        raise ValueError(f"{host!r} is not a host name; {EXPECTED}")
    return host
