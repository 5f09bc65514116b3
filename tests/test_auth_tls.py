"""Basic auth, response headers, invalidation protection, TLS/mTLS and SIGHUP reloads."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.auth import REALM, WEB_SECURITY
from tests.doubles import ClientFactory
from tests.support import (
    cpu_seconds,
    fake_path,
    free_port,
    read_log,
    run_exporter,
    running,
    wait_for,
)
from tests.websec import (
    HEADERS,
    HSTS,
    PKI,
    SLOW_ROUNDS,
    auth_config,
    basic,
    client_context,
    https_get,
    make_pki,
    start,
)


async def test_basic_auth_on_every_endpoint(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    config = auth_config(tmp_path / "web.yml", {"alice": "wonderland", "bob": "builder"})
    client, *_ = await start(aiohttp_client, config)
    for path in ("/metrics", "/", "/cache/stats", "/-/ready"):
        resp = await client.get(path)
        assert resp.status == 401, path
        assert resp.headers["WWW-Authenticate"] == f'Basic realm="{REALM}"'
        assert (await client.get(path, headers=basic("alice", "wonderland"))).status == 200
        assert (await client.get(path, headers=basic("bob", "builder"))).status == 200
    for headers in (
        basic("alice", "builder"),  # another user's password
        basic("mallory", "wonderland"),  # unknown user
        basic("alice", "w" * 100),  # longer than bcrypt's 72 bytes
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer wonderland"},
    ):
        assert (await client.get("/metrics", headers=headers)).status == 401, headers
    assert (await client.get("/-/healthy")).status == 200  # the one documented exemption
    resp = await client.get("/no-such-page")  # 401, not 404: paths are not probed unauthenticated
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == f'Basic realm="{REALM}"'
    assert (await client.get("/no-such-page", headers=basic("bob", "builder"))).status == 404


async def test_checked_credentials_are_cached(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client, app, *_ = await start(aiohttp_client, auth_config(tmp_path / "w.yml", {"alice": "pw"}))
    authenticator = app[WEB_SECURITY].authenticator
    for _ in range(5):
        assert (await client.get("/metrics", headers=basic("alice", "pw"))).status == 200
    assert authenticator.checks == 1
    for _ in range(3):  # a failure is remembered too: the same guess again costs no bcrypt
        assert (await client.get("/metrics", headers=basic("alice", "nope"))).status == 401
    assert authenticator.checks == 2
    assert (await client.get("/metrics", headers=basic("alice", "nope2"))).status == 401
    assert authenticator.checks == 3
    # An unknown user is checked against a decoy hash, so it costs the same as a known one,
    # and is remembered the same way.
    for _ in range(2):
        assert (await client.get("/metrics", headers=basic("mallory", "pw"))).status == 401
    assert authenticator.checks == 4
    assert (await client.get("/metrics", headers=basic("alice", "pw"))).status == 200
    assert authenticator.checks == 4


async def test_configured_headers_on_all_responses(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client, *_ = await start(aiohttp_client, auth_config(tmp_path / "w.yml", {"a": "b"}, HEADERS))
    responses = [
        await client.get("/metrics", headers=basic("a", "b")),  # 200
        await client.get("/metrics"),  # 401
        await client.get("/nope", headers=basic("a", "b")),  # 404
        await client.get("/cache/invalidate", headers=basic("a", "b")),  # 405
        await client.get("/-/healthy"),
    ]
    assert [r.status for r in responses] == [200, 401, 404, 405, 200]
    for resp in responses:
        assert resp.headers["Strict-Transport-Security"] == HSTS
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_invalidate_is_protected(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    config = auth_config(tmp_path / "w.yml", {"admin": "s3cret"})
    client, _, cache, clock = await start(aiohttp_client, config)
    admin = basic("admin", "s3cret")
    generation = cache.generation
    assert (await client.post("/cache/invalidate?collector=a")).status == 401
    assert (await client.post("/cache/invalidate", headers=basic("admin", "x"))).status == 401
    assert cache.generation == generation and not cache.view("a").expired(clock.now())
    assert (await client.get("/cache/invalidate", headers=admin)).status == 405
    resp = await client.post("/cache/invalidate?collector=a", headers=admin)
    assert resp.status == 200 and (await resp.json())["invalidated"] == ["a"]
    assert cache.view("a").expired(clock.now())
    resp = await client.post("/cache/invalidate?collector=a", headers=admin)
    assert resp.status == 429
    retry_after = int(resp.headers["Retry-After"])
    assert 0 < retry_after <= 60  # the default --web.invalidate-min-interval


async def test_invalidate_disabled_is_403_even_for_admins(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    config = auth_config(tmp_path / "w.yml", {"admin": "s3cret"})
    client, _, cache, clock = await start(aiohttp_client, config, invalidate_enabled=False)
    assert (await client.post("/cache/invalidate")).status == 401
    assert (await client.post("/cache/invalidate", headers=basic("admin", "s3cret"))).status == 403
    assert not cache.view("a").expired(clock.now())


async def test_reload_swaps_users_and_keeps_old_config_on_error(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    config = auth_config(tmp_path / "w.yml", {"alice": "one"})
    client, app, *_ = await start(aiohttp_client, config)
    security = app[WEB_SECURITY]
    auth_config(config, {"bob": "two"}, HEADERS)
    assert await security.reload() is True
    resp = await client.get("/metrics", headers=basic("bob", "two"))
    assert resp.status == 200 and resp.headers["Strict-Transport-Security"] == HSTS
    assert (await client.get("/metrics", headers=basic("alice", "one"))).status == 401
    config.write_text("basic_auth_users:\n  carol: not-a-hash\n")
    assert await security.reload() is False
    assert (await client.get("/metrics", headers=basic("bob", "two"))).status == 200


def test_a_connection_waiting_for_its_password_check_is_not_evicted(tmp_path: Path) -> None:
    config = auth_config(tmp_path / "web.yml", {"prometheus": "scrape"}, rounds=SLOW_ROUNDS)
    args = [
        "--collector.disable-defaults",
        "--web.max-connections=1",
        "--web.read-header-timeout=1s",  # shorter than the check
        f"--web.config.file={config}",
    ]
    auth = "Authorization: " + basic("prometheus", "scrape")["Authorization"]
    with (
        run_exporter(args, tmp_path, wait_ready=False) as exporter,
        socket.create_connection(("127.0.0.1", exporter.port), timeout=30) as waiting,
    ):
        spent = cpu_seconds(exporter.proc.pid)
        waiting.sendall(f"GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n".encode())
        wait_for(lambda: cpu_seconds(exporter.proc.pid) - spent > 0.3, "the password check")
        # At the bound: the waiting connection is busy, so the new one is refused.
        with socket.create_connection(("127.0.0.1", exporter.port), timeout=30) as extra:
            extra.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                assert extra.recv(100) == b""
        assert waiting.recv(100).startswith(b"HTTP/1.1 200")
        assert "refused a new connection" in exporter.logs()


async def test_a_reload_can_turn_auth_on(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    config = tmp_path / "w.yml"
    config.write_text(HEADERS)  # a file without users: nothing to check yet
    client, app, *_ = await start(aiohttp_client, config)
    assert (await client.get("/metrics")).status == 200
    auth_config(config, {"alice": "one"}, HEADERS)
    assert await app[WEB_SECURITY].reload() is True
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers=basic("alice", "one"))).status == 200


def test_sighup_reloads_users_in_a_running_exporter(tmp_path: Path) -> None:
    config = auth_config(tmp_path / "web.yml", {"alice": "one"})
    args = ["--collector.disable-defaults", f"--web.config.file={config}"]
    with run_exporter(args, tmp_path, wait_ready=False) as exporter:
        assert exporter.get("/metrics", basic("alice", "one"))[0] == 200
        assert exporter.get("/metrics", basic("bob", "two"))[0] == 401
        auth_config(config, {"bob": "two"})
        exporter.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: exporter.get("/metrics", basic("bob", "two"))[0] == 200)
        assert exporter.get("/metrics", basic("alice", "one"))[0] == 401
        config.write_text("basic_auth_users: [broken\n")
        exporter.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed, keeping the previous config" in exporter.logs())
        assert exporter.get("/metrics", basic("bob", "two"))[0] == 200
        assert exporter.proc.poll() is None


REFUSED = "reload failed, keeping the previous config"


def counted(read: Callable[[], str], text: str, times: int) -> Callable[[], bool]:
    """A wait_for condition: ``text`` occurs ``times`` times in what ``read`` returns."""
    return lambda: read().count(text) == times


def test_sighup_never_turns_auth_off(tmp_path: Path) -> None:
    config = auth_config(tmp_path / "web.yml", {"alice": "one"})
    args = ["--collector.disable-defaults", f"--web.config.file={config}"]
    deep = "basic_auth_users:\n  alice: " + "[" * 3000 + "]" * 3000 + "\n"
    bad_files = {
        "": "has no basic_auth_users",  # emptied
        HEADERS: "has no basic_auth_users",  # truncated: the users are gone, headers remain
        deep: "nested deeper than 32 levels",
    }
    with run_exporter(args, tmp_path, wait_ready=False) as exporter:
        for refusals, (text, reason) in enumerate(bad_files.items(), 1):
            config.write_text(text)
            exporter.proc.send_signal(signal.SIGHUP)
            wait_for(counted(exporter.logs, REFUSED, refusals))
            line = exporter.logs().splitlines()[-1]
            assert REFUSED in line and reason in line, line
            status, _ = exporter.get("/metrics")
            assert status == 401
            assert exporter.get("/metrics", basic("alice", "one"))[0] == 200
        assert "Traceback" not in exporter.logs()
        auth_config(config, {"bob": "two"})  # a valid file still applies
        exporter.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: exporter.get("/metrics", basic("bob", "two"))[0] == 200)
        assert exporter.proc.poll() is None


# --- TLS against a real exporter process -------------------------------------------------


@contextlib.contextmanager
def tls_exporter(config: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Start the exporter with ``config``; ready once it logs that it is listening."""
    port = free_port()
    log = tmp_path / f"tls-{port}.log"
    argv = [
        sys.executable, "-m", "exporter", "--collector.disable-defaults",
        f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={config}",
    ]  # fmt: skip
    env = {**os.environ, "PATH": fake_path()}
    with running(argv, log, lambda: "listening on" in read_log(log), 60, "exporter", env) as proc:
        yield proc, port


def refused(port: int, context: ssl.SSLContext) -> bool:
    """True when the server ends the TLS connection without an HTTP answer."""
    try:
        data, _ = https_get(port, context)
    except (ssl.SSLError, ConnectionError):
        return True
    return not data.startswith(b"HTTP/")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mtls_port(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("mtls")
    tls = (
        "tls_server_config:\n"
        f"  cert_file: {pki.server}\n  key_file: {pki.server_key}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n"
        "  min_version: TLS13\n"
    )
    config = auth_config(tmp / "web.yml", {"prometheus": "scrape"}, tls + HEADERS)
    with tls_exporter(config, tmp) as (_, port):
        yield port


def test_tls_with_verified_client_cert(mtls_port: int, pki: PKI) -> None:
    context = client_context(pki, "client")
    data, peer = https_get(mtls_port, context)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert peer == ssl.PEM_cert_to_DER_cert(pki.server.read_text())
    assert f"Strict-Transport-Security: {HSTS}".encode() in data
    auth = "Authorization: " + basic("prometheus", "scrape")["Authorization"] + "\r\n"
    assert https_get(mtls_port, context, "/metrics")[0].startswith(b"HTTP/1.1 401 ")
    data, _ = https_get(mtls_port, context, "/metrics", auth)
    assert data.startswith(b"HTTP/1.1 200 ") and b"hwcache_build_info" in data


def test_mtls_rejects_missing_or_foreign_client_cert(mtls_port: int, pki: PKI) -> None:
    assert refused(mtls_port, client_context(pki))
    assert refused(mtls_port, client_context(pki, "rogue"))
    assert not refused(mtls_port, client_context(pki, "client"))


def test_min_version_is_enforced(mtls_port: int, pki: PKI) -> None:
    old = client_context(pki, "client")
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        https_get(mtls_port, old)


def test_sighup_reloads_the_tls_certificate(pki: PKI, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(pki.server.read_bytes())
    key.write_bytes(pki.server_key.read_bytes())
    config = tmp_path / "web.yml"
    config.write_text("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n")
    context = client_context(pki)
    first = ssl.PEM_cert_to_DER_cert(pki.server.read_text())
    second = ssl.PEM_cert_to_DER_cert(pki.server2.read_text())
    with tls_exporter(config, tmp_path) as (proc, port):
        assert https_get(port, context)[1] == first
        cert.write_bytes(pki.server2.read_bytes())
        key.write_bytes(pki.server2_key.read_bytes())
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: https_get(port, context)[1] == second)
        cert.write_text("garbage\n")
        proc.send_signal(signal.SIGHUP)
        log = next(tmp_path.glob("tls-*.log"))
        wait_for(lambda: "reload failed" in log.read_text())
        data, peer = https_get(port, context)
        assert peer == second and data.startswith(b"HTTP/1.1 200 ")


def test_sighup_never_turns_tls_or_auth_off(pki: PKI, tmp_path: Path) -> None:
    tls = f"tls_server_config:\n  cert_file: {pki.server}\n  key_file: {pki.server_key}\n"
    config = auth_config(tmp_path / "web.yml", {"alice": "one"}, tls)
    alice = "Authorization: " + basic("alice", "one")["Authorization"] + "\r\n"
    context = client_context(pki)
    with tls_exporter(config, tmp_path) as (proc, port):
        log = next(tmp_path.glob("tls-*.log"))
        bad_files = {
            tls: "has no basic_auth_users;",  # truncated after the TLS section
            "": "has no basic_auth_users and no tls_server_config; turning basic auth and TLS off",
            # Users kept, TLS gone: the new headers must not apply either.
            auth_config(tmp_path / "plain.yml", {"alice": "one"}, HEADERS).read_text(): (
                "has no tls_server_config"
            ),
        }
        for refusals, (text, reason) in enumerate(bad_files.items(), 1):
            config.write_text(text)
            proc.send_signal(signal.SIGHUP)
            wait_for(counted(log.read_text, REFUSED, refusals))
            line = log.read_text().splitlines()[-1]
            assert REFUSED in line and reason in line, line
            assert https_get(port, context, "/metrics")[0].startswith(b"HTTP/1.1 401 ")
            data, _ = https_get(port, context, "/metrics", alice)
            assert data.startswith(b"HTTP/1.1 200 ") and b"Strict-Transport-Security" not in data
