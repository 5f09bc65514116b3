"""The sd_notify protocol, written by hand: one datagram to $NOTIFY_SOCKET (no libsystemd)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def socket_address(env: Mapping[str, str] | None = None) -> str | None:
    """$NOTIFY_SOCKET as an AF_UNIX address ('@name' is the abstract namespace), or None."""
    value = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    if value:
        # vsock: and other transports of newer systemd versions are not needed on a host.
        log.warning("NOTIFY_SOCKET=%r is not an AF_UNIX socket path; not notifying", value)
    return None


def notify(*assignments: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``READY=1``-style lines to the service manager; False when there is none."""
    address = socket_address(env)
    if address is None or not assignments:
        return False
    message = "\n".join(assignments).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Non-blocking: a stuck service manager must never stall the event loop.
            sock.setblocking(False)
            sock.sendto(message, address)
    except OSError as exc:
        log.warning("sd_notify %s failed: %s", assignments[0].split("=")[0], exc)
        return False
    return True


def ready(status: str | None = None) -> bool:
    """Tell systemd the service is up (Type=notify)."""
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def stopping(status: str | None = None) -> bool:
    """Tell systemd the service is shutting down."""
    return notify("STOPPING=1", *([f"STATUS={status}"] if status else []))


def status(text: str) -> bool:
    """Update the one-line status shown by ``systemctl status``."""
    return notify(f"STATUS={text}")
