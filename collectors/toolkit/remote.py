"""What a remote-target driver reads of its module and target (the exporter's config fits these)."""

from __future__ import annotations

from typing import Protocol


class Credential(Protocol):
    """A secret by reference; ``read`` returns its current value or raises OSError/ValueError."""

    def read(self) -> str:
        """The current value (re-read on every login, so rotated secrets are picked up)."""
        ...


class LoginModule(Protocol):
    """What every driver reads of a ``/probe`` module: credentials and the poll's timeout."""

    @property
    def username(self) -> Credential:
        """The user name to log in with."""
        ...

    @property
    def password(self) -> Credential:
        """The password to log in with."""
        ...

    @property
    def timeout(self) -> float:
        """Seconds one whole poll may take."""
        ...


class RemoteModule(LoginModule, Protocol):
    """How to reach and poll one kind of HTTP remote target (a Redfish ``/probe`` module)."""

    @property
    def scheme(self) -> str:
        """``https`` or ``http``."""
        ...

    @property
    def request_timeout(self) -> float:
        """Seconds one request may take."""
        ...

    @property
    def max_response_bytes(self) -> int:
        """The largest response body read."""
        ...


class RemoteTarget(Protocol):
    """One remote target: a host name or address and an optional port."""

    @property
    def host(self) -> str:
        """Lower-case host name or IP address."""
        ...

    @property
    def port(self) -> int | None:
        """The port, when given."""
        ...

    def netloc(self) -> str:
        """``host[:port]`` as in a URL (IPv6 in brackets)."""
        ...
