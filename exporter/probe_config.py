"""The ``--config.file`` YAML: remote-target modules for ``/probe``, checked at startup."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collectors.toolkit.durations import parse_duration
from exporter.probe_target import Allowed, Target, parse_allowed
from exporter.webconfig_yaml import WebConfigError, parse_yaml

DRIVERS = ("redfish", "ipmi")
COMMON_KEYS = frozenset(
    {
        "driver",
        "username",
        "username_file",
        "username_env",
        "password",
        "password_file",
        "password_env",
        "interval",
        "timeout",
        "max_concurrent_polls",
        "targets",
    }
)
# Keys that only one driver reads: a key of the other driver is a mistake worth a message.
DRIVER_KEYS = {
    "redfish": frozenset(
        {"scheme", "tls_verify", "ca_file", "request_timeout", "max_response_bytes"}
    ),
    "ipmi": frozenset({"privilege", "cipher_suite", "dcmi", "sel", "sensor_source"}),
}
MODULE_KEYS = COMMON_KEYS.union(*DRIVER_KEYS.values())
# ipmitool -L values by the names operators know (IPMI privilege levels).
PRIVILEGES = {"user": "USER", "operator": "OPERATOR", "administrator": "ADMINISTRATOR"}
CIPHER_SUITES = range(18)  # IPMI 2.0 cipher suite ids 0-17 (ipmitool -C)
TOP_KEYS = frozenset({"modules", "max_targets", "max_concurrent_polls", "refresh_jitter"})


class ProbeConfigError(ValueError):
    """The config file is unusable; the message names the module and key."""


@dataclass(frozen=True)
class Secret:
    """A credential by reference (file or environment variable); its value is never stored."""

    kind: str  # "file", "env" or "literal" (user names only)
    ref: str

    def read(self) -> str:
        """The current value (re-read on every login, so rotated files are picked up)."""
        if self.kind == "literal":
            return self.ref
        if self.kind == "env":
            value = os.environ.get(self.ref, "")
        else:
            value = Path(self.ref).read_text().rstrip("\r\n")
        if not value:
            raise ValueError(f"{self.describe()} is empty")
        return value

    def describe(self) -> str:
        """Where the value comes from, for messages (never the value)."""
        return {"file": "file ", "env": "environment variable "}.get(self.kind, "") + (
            self.ref if self.kind != "literal" else "(inline user name)"
        )


@dataclass(frozen=True)
class IpmiLan:
    """The ``ipmi`` driver's settings: session privilege, cipher suite, what to read."""

    privilege: str = "USER"
    cipher_suite: int | None = None  # None: ipmitool picks from the BMC's list
    sensor_source: str = "sdr"
    dcmi: bool = True
    sel: bool = True


@dataclass(frozen=True)
class ProbeModule:
    """One ``modules:`` entry: how to reach and poll one kind of remote target."""

    name: str
    driver: str
    scheme: str
    username: Secret
    password: Secret
    tls_verify: bool
    ca_file: Path | None
    interval: float
    timeout: float
    request_timeout: float
    max_response_bytes: int
    max_concurrent_polls: int
    targets: tuple[Allowed, ...]
    ipmi: IpmiLan | None = None  # driver ipmi only

    def allows(self, target: Target) -> bool:
        """Whether the allow-list admits ``target``."""
        return any(allowed.matches(target) for allowed in self.targets)


@dataclass(frozen=True)
class ProbeConfig:
    """Every module plus the bounds shared by all remote targets."""

    modules: Mapping[str, ProbeModule]
    max_targets: int = 1000
    max_concurrent_polls: int = 16
    refresh_jitter: float = 0.1  # fraction of the interval taken off at random


def load_probe_config(path: Path) -> ProbeConfig:
    """Parse and check the file; raise ProbeConfigError with a one-line reason."""
    try:
        # The web config's reader: one-line errors, duplicate keys and deep nesting refused.
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProbeConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, WebConfigError) as exc:
        raise ProbeConfigError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("modules"), dict):
        raise ProbeConfigError(f"{path}: expected a mapping with a 'modules:' mapping")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ProbeConfigError(f"{path}: unknown key {sorted(unknown)[0]!r}")
    modules = {str(name): _module(str(name), item) for name, item in data["modules"].items()}
    if not modules:
        raise ProbeConfigError(f"{path}: 'modules:' is empty")
    jitter = data.get("refresh_jitter", 0.1)
    if not isinstance(jitter, int | float) or not 0 <= jitter < 1:
        raise ProbeConfigError("refresh_jitter: expected a fraction in [0, 1)")
    return ProbeConfig(
        modules,
        _positive_int(data, "max_targets", 1000, "config"),
        _positive_int(data, "max_concurrent_polls", 16, "config"),
        float(jitter),
    )


def _module(name: str, item: Any) -> ProbeModule:
    where = f"module {name!r}"
    if not isinstance(item, dict):
        raise ProbeConfigError(f"{where}: expected a mapping")
    unknown = set(item) - MODULE_KEYS
    if unknown:
        raise ProbeConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    driver = item.get("driver")
    if driver not in DRIVERS:
        raise ProbeConfigError(f"{where}: driver must be one of {', '.join(DRIVERS)}")
    foreign = sorted(set(item) - COMMON_KEYS - DRIVER_KEYS[driver])
    if foreign:
        raise ProbeConfigError(f"{where}: key {foreign[0]!r} does not apply to driver {driver}")
    scheme = item.get("scheme", "https")
    if scheme not in ("https", "http"):
        raise ProbeConfigError(f"{where}: scheme must be https or http")
    ca_file = item.get("ca_file")
    if ca_file is not None and not Path(str(ca_file)).is_file():
        raise ProbeConfigError(f"{where}: ca_file {ca_file} is not a readable file")
    tls_verify = item.get("tls_verify", True)
    if not isinstance(tls_verify, bool):
        raise ProbeConfigError(f"{where}: tls_verify must be true or false")
    targets = item.get("targets")
    if not isinstance(targets, list) or not targets:
        raise ProbeConfigError(f"{where}: 'targets:' must be a non-empty allow-list")
    try:
        allowed = tuple(parse_allowed(str(t)) for t in targets)
    except ValueError as exc:
        raise ProbeConfigError(f"{where}: targets: {exc}") from None
    timeout = _duration(item, "timeout", "1m", where)
    username = _secret(item, "username", where, literal=True)
    password = _secret(item, "password", where, literal=False)
    if driver == "ipmi":
        _ipmi_lengths(username, password, where)
    return ProbeModule(
        name=name,
        driver=driver,
        scheme=scheme,
        username=username,
        password=password,
        tls_verify=tls_verify,
        ca_file=Path(str(ca_file)) if ca_file is not None else None,
        interval=_duration(item, "interval", "10m", where),
        timeout=timeout,
        request_timeout=min(timeout, _duration(item, "request_timeout", "20s", where)),
        max_response_bytes=_positive_int(item, "max_response_bytes", 4 * 1024 * 1024, where),
        max_concurrent_polls=_positive_int(item, "max_concurrent_polls", 4, where),
        targets=allowed,
        ipmi=_ipmi(item, where) if driver == "ipmi" else None,
    )


def _ipmi_lengths(username: Secret, password: Secret, where: str) -> None:
    """IPMI 2.0 limits: user names of 16 bytes, passwords of 20 (ipmitool refuses longer)."""
    for secret, key, limit in ((username, "username", 16), (password, "password", 20)):
        if len(secret.read().encode()) > limit:
            source = f" in {secret.describe()}" if secret.kind != "literal" else ""
            raise ProbeConfigError(
                f"{where}: the {key}{source} is longer than IPMI's {limit} bytes"
            )


def _ipmi(item: Mapping[str, Any], where: str) -> IpmiLan:
    """The ``ipmi`` driver's keys, checked."""
    privilege = item.get("privilege", "user")
    if not isinstance(privilege, str) or privilege.lower() not in PRIVILEGES:
        raise ProbeConfigError(f"{where}: privilege must be one of {', '.join(PRIVILEGES)}")
    suite = item.get("cipher_suite")
    if suite is not None and (
        isinstance(suite, bool) or not isinstance(suite, int) or suite not in CIPHER_SUITES
    ):
        raise ProbeConfigError(f"{where}: cipher_suite must be an IPMI cipher suite id, 0-17")
    source = item.get("sensor_source", "sdr")
    if source not in ("sdr", "sensor"):
        raise ProbeConfigError(f"{where}: sensor_source must be sdr or sensor")
    flags = {key: item.get(key, True) for key in ("dcmi", "sel")}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise ProbeConfigError(f"{where}: {key} must be true or false")
    return IpmiLan(PRIVILEGES[privilege.lower()], suite, source, flags["dcmi"], flags["sel"])


def _secret(item: Mapping[str, Any], key: str, where: str, literal: bool) -> Secret:
    """``<key>_file`` or ``<key>_env`` (user names may also be inline); checked readable now."""
    given = [k for k in (key, f"{key}_file", f"{key}_env") if k in item]
    if key in given and not literal:
        raise ProbeConfigError(f"{where}: give the password as password_file or password_env")
    if len(given) != 1:
        raise ProbeConfigError(f"{where}: give exactly one of {key}_file, {key}_env")
    chosen = given[0]
    kind = {key: "literal", f"{key}_file": "file", f"{key}_env": "env"}[chosen]
    secret = Secret(kind, str(item[chosen]))
    try:
        secret.read()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ProbeConfigError(f"{where}: {chosen}: {reason}") from None
    return secret


def _duration(item: Mapping[str, Any], key: str, default: str, where: str) -> float:
    try:
        seconds = parse_duration(str(item.get(key, default)))
    except ValueError as exc:
        raise ProbeConfigError(f"{where}: {key}: {exc}") from None
    if seconds <= 0:
        raise ProbeConfigError(f"{where}: {key} must be positive")
    return seconds


def _positive_int(item: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = item.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProbeConfigError(f"{where}: {key} must be a positive integer")
    return value
