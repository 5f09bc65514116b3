"""Web security test helpers: a throwaway PKI, bcrypt hashes, auth headers, secured apps."""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt

from exporter.app import create_app
from exporter.auth import WebSecurity
from exporter.settings import Settings
from exporter.webconfig import load_web_config
from tests.doubles import ClientFactory, make_cache


@dataclass(frozen=True)
class PKI:
    """A throwaway CA with server and client certificates (PEM files in ``root``)."""

    root: Path

    def __getattr__(self, name: str) -> Path:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.root / f"{name}.pem"


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _leaf(root: Path, name: str, ca: str, subject: str, san: str | None, serial: int) -> None:
    """Key + certificate ``name`` signed by ``ca`` (``<ca>_key.pem``/``<ca>.pem``)."""
    req = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    extra = ["-addext", f"subjectAltName={san}"] if san else []
    _openssl(
        root, "req", *req, "-keyout", f"{name}_key.pem", "-out", f"{name}.csr",
        "-subj", subject, *extra,
    )  # fmt: skip
    _openssl(
        root, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}_key.pem",
        "-set_serial", str(serial), "-days", "2", "-out", f"{name}.pem", "-copy_extensions", "copy",
    )  # fmt: skip


def make_pki(root: Path) -> PKI:
    """CA ``ca``; ``server`` and ``server2`` (127.0.0.1/localhost); ``client``; ``rogue``
    (a client certificate from an unrelated CA ``other_ca``)."""
    root.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other_ca"):
        _openssl(
            root, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", f"{ca}_key.pem", "-out", f"{ca}.pem", "-days", "2",
            "-subj", f"/CN=hwcache test {ca}",
        )  # fmt: skip
    san = "IP:127.0.0.1,DNS:localhost"
    _leaf(root, "server", "ca", "/CN=localhost", san, 1001)
    _leaf(root, "server2", "ca", "/CN=localhost", san, 1002)
    _leaf(root, "client", "ca", "/CN=prometheus", None, 1003)
    _leaf(root, "rogue", "other_ca", "/CN=prometheus", None, 1004)
    return PKI(root)


def hash_password(password: str, rounds: int = 4) -> str:
    """A bcrypt hash (the cheapest cost unless ``rounds`` says), as ``htpasswd -B`` writes it."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


HSTS = "max-age=31536000; includeSubDomains"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def auth_config(path: Path, users: dict[str, str], extra: str = "", rounds: int = 4) -> Path:
    """Write a web config with bcrypt hashes of ``users`` (name -> password)."""
    lines = ["basic_auth_users:"] + [f"  {u}: {hash_password(p, rounds)}" for u, p in users.items()]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


# A bcrypt cost whose check takes seconds (2.5 s on a 2-vCPU VM): long enough to watch a
# request wait for it (its CPU time shows it started, support.cpu_seconds).
SLOW_ROUNDS = 15


HEADERS = f"http_server_config:\n  headers:\n    Strict-Transport-Security: '{HSTS}'\n"


HEADERS += "    X-Content-Type-Options: nosniff\n"


async def start(aiohttp_client: ClientFactory, config: Path, **settings: Any) -> Any:
    cache, collectors, clock = make_cache("a", "b")
    security = WebSecurity(load_web_config(config))
    app = create_app(
        Settings(collectors=(), **settings), clock=clock, cache=cache, security=security
    )
    client = await aiohttp_client(app)
    await cache.warm_up()
    return client, app, cache, clock


def client_context(pki: PKI, cert: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca)
    if cert is not None:
        context.load_cert_chain(pki.root / f"{cert}.pem", pki.root / f"{cert}_key.pem")
    return context


def https_get(
    port: int, context: ssl.SSLContext, path: str = "/-/healthy", headers: str = ""
) -> tuple[bytes, bytes]:
    """Raw HTTPS GET; returns (response bytes, server certificate DER)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        peer = tls.getpeercert(binary_form=True) or b""
        tls.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return data, peer
