"""``/probe`` targets: strict ``HOST[:PORT]`` parsing and the per-module allow-list."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_PATTERN = re.compile(r"[a-z0-9_*?.-]+")
MAX_TARGET = 262


@dataclass(frozen=True)
class Target:
    """A parsed remote target: lower-case host name or IP address, optional port."""

    host: str
    port: int | None = None
    ip: IPAddress | None = None

    def netloc(self) -> str:
        """``host[:port]`` as in a URL (IPv6 in brackets)."""
        host = f"[{self.host}]" if self.ip is not None and self.ip.version == 6 else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.netloc()


def parse_target(text: str) -> Target:
    """Parse ``HOST[:PORT]``, ``[IPv6][:PORT]`` or a bare IPv6 address; ValueError otherwise."""
    if not text:
        raise ValueError("target is missing (?target=HOST[:PORT])")
    if len(text) > MAX_TARGET or not text.isascii() or not text.isprintable():
        raise ValueError("target is not a host name or address")
    if any(c in text for c in "/@?#% \\"):
        raise ValueError("target must be HOST[:PORT], not a URL")
    port_text: str | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("target: malformed [IPv6]:PORT")
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        host = text
    else:
        host, sep, tail = text.partition(":")
        port_text = tail if sep else None
    port = _port(port_text) if port_text is not None else None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return Target(_hostname(host), port)
    return Target(ip.compressed, port, ip)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError("target: port must be 1-65535")
    return int(text)


def _hostname(host: str) -> str:
    name = host.lower().removesuffix(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(p) for p in name.split(".")):
        raise ValueError("target: not a valid host name or IP address")
    return name


@dataclass(frozen=True)
class Allowed:
    """One allow-list entry: an IP network (a single address is a /32 or /128) or a name glob."""

    network: IPNetwork | None = None
    pattern: str | None = None

    def matches(self, target: Target) -> bool:
        """Addresses match networks; names match globs (never resolved, so no lookup happens)."""
        if target.ip is not None:
            return self.network is not None and target.ip in self.network
        return self.pattern is not None and fnmatch.fnmatchcase(target.host, self.pattern)


def parse_allowed(text: str) -> Allowed:
    """Parse ``10.1.0.0/16``, ``127.0.0.1``, ``::1`` or ``*.bmc.example.net``."""
    try:
        return Allowed(network=ipaddress.ip_network(text, strict=False))
    except ValueError:
        pass
    pattern = text.lower().removesuffix(".")
    if not _PATTERN.fullmatch(pattern) or "/" in pattern:
        raise ValueError(f"{text!r} is neither an IP network nor a host name pattern")
    return Allowed(pattern=pattern)
