"""Idle, half-sent and keep-alive connections are closed; their number is bounded below the fd limit."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import selectors
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from exporter.connections import Throttled
from exporter.limits import BODY_CHUNK
from exporter.serve import FD_RESERVE, accept_error_handler
from tests.support import FIXTURE_ARGS, Exporter, fake_path, free_port, run_exporter, running
from tests.websec import client_context, https_get, make_pki

HALF_REQUEST = b"GET /metr"
# A TLS handshake record header and the first bytes of a ClientHello, then nothing.
CLIENT_HELLO_START = bytes.fromhex("16030100c8010000c40303")
# The exporter under RLIMIT_NOFILE=(soft, hard) given as the first two arguments.
LIMITED = (
    "import resource, runpy, sys; soft, hard = int(sys.argv.pop(1)), int(sys.argv.pop(1)); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)); "
    "runpy.run_module('exporter', run_name='__main__')"
)


def limited(soft: int, hard: int) -> tuple[str, ...]:
    """``python -m exporter`` with a lowered open files limit."""
    return (sys.executable, "-c", LIMITED, str(soft), str(hard))


@contextlib.contextmanager
def idle_sockets(port: int, count: int, send: bytes = b"") -> Iterator[list[socket.socket]]:
    """``count`` connections that send ``send`` (maybe nothing) and then nothing more."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            socks.append(sock)
            sock.setblocking(False)
            # Non-blocking: past the listen backlog a connect waits for the server to accept.
            assert sock.connect_ex(("127.0.0.1", port)) in (0, errno.EINPROGRESS)
        with selectors.DefaultSelector() as sel:
            for sock in socks:
                sel.register(sock, selectors.EVENT_WRITE)
            pending, deadline = len(socks), time.monotonic() + 30
            while pending and time.monotonic() < deadline:
                for key, _ in sel.select(1.0):
                    sel.unregister(key.fileobj)
                    pending -= 1
            assert pending == 0, f"{pending} connections not established"
        for sock in socks:
            if send:
                with contextlib.suppress(OSError):  # already closed to make room for others
                    sock.send(send)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def await_closed(socks: list[socket.socket], timeout: float) -> list[float]:
    """Wait until the server closed every socket; when each was seen closed (monotonic)."""
    closed: list[float] = []
    with selectors.DefaultSelector() as sel:
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while len(closed) < len(socks) and time.monotonic() < deadline:
            for key, _ in sel.select(1.0):
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                try:
                    data = conn.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    sel.unregister(conn)
                    closed.append(time.monotonic())
    assert len(closed) == len(socks), f"{len(socks) - len(closed)} sockets still open"
    return closed


def traceback_lines(exporter: Exporter) -> int:
    """Lines of Python tracebacks in the exporter's log."""
    return sum(
        1 for line in exporter.logs().splitlines() if "Traceback" in line or "  File " in line
    )


def test_idle_sockets_past_the_fd_limit_do_not_stop_scrapes(tmp_path: Path) -> None:
    nofile, max_connections, idle = 320, 50, 400  # more idle sockets than the exporter has fds
    assert max_connections + FD_RESERVE <= nofile
    args = [
        "--collector.disable-defaults",
        f"--web.max-connections={max_connections}",
        "--web.read-header-timeout=3s",
    ]
    with (
        run_exporter(args, tmp_path, command=limited(nofile, nofile)) as exporter,
        idle_sockets(exporter.port, idle // 2) as silent,
        idle_sockets(exporter.port, idle // 2, HALF_REQUEST) as half,
    ):
        started = time.monotonic()
        status, body = exporter.get("/metrics")
        assert status == 200 and b"hwcache_build_info" in body
        assert time.monotonic() - started < 2  # admitted at once: an idle connection made room
        assert psutil.Process(exporter.proc.pid).num_fds() < max_connections + 40
        await_closed(silent + half, timeout=30)
        assert exporter.get("/-/healthy")[0] == 200
    assert traceback_lines(exporter) == 0
    assert len(exporter.logs().splitlines()) < 20, exporter.logs()


def test_header_timeout_closes_silent_half_sent_and_dribbling_sockets(tmp_path: Path) -> None:
    timeout = 1.5
    args = ["--collector.disable-defaults", f"--web.read-header-timeout={timeout}s"]
    with (
        run_exporter(args, tmp_path) as exporter,
        idle_sockets(exporter.port, 10) as silent,
        idle_sockets(exporter.port, 10, HALF_REQUEST) as half,
        idle_sockets(exporter.port, 1, b"GET / HTTP/1.1\r\n") as (dribbler,),
    ):
        opened = time.monotonic()
        # A slowloris client: one more header byte every 200ms never completes the headers.
        with selectors.DefaultSelector() as sel:
            sel.register(dribbler, selectors.EVENT_READ)
            while not sel.select(0.2) and time.monotonic() - opened < 30:
                dribbler.send(b"X")
        closed = await_closed(silent + half + [dribbler], timeout=30)
        assert min(closed) - opened > timeout - 0.5  # not before the timeout ...
        assert max(closed) - opened < timeout + 5  # ... and soon after it
        assert exporter.get("/-/healthy")[0] == 200


def http_exchange(sock: socket.socket, path: str) -> bytes:
    """Send a keep-alive GET, read exactly one response (Content-Length) and return it."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))[15:]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


# The last request before the idle spell: one of the routes, or one aiohttp answers itself.
LAST_REQUESTS = {"/metrics": b"200", "/nope": b"404", "/cache/invalidate": b"405"}


@pytest.mark.parametrize("last", LAST_REQUESTS)
def test_keepalive_connections_are_closed_after_the_idle_timeout(tmp_path: Path, last: str) -> None:
    idle = 3.0
    args = [
        "--collector.disable-defaults",
        "--web.read-header-timeout=1s",
        f"--web.idle-timeout={idle}s",
    ]
    with run_exporter(args, tmp_path) as exporter:
        with socket.create_connection(("127.0.0.1", exporter.port), timeout=30) as sock:
            assert http_exchange(sock, "/-/healthy").startswith(b"HTTP/1.1 200")
            status = b"HTTP/1.1 " + LAST_REQUESTS[last]
            assert http_exchange(sock, last).startswith(status)  # kept alive
            answered = time.monotonic()
            (closed,) = await_closed([sock], timeout=30)
        # The idle timeout, not the (shorter) header timeout, applies between requests.
        assert idle - 0.5 < closed - answered < idle + 5


def test_a_slow_scrape_is_not_cut_by_the_header_or_idle_timeout(tmp_path: Path) -> None:
    args = [
        *FIXTURE_ARGS,
        "--collector.synthetic",
        "--collector.synthetic.delay=4",
        "--collector.synthetic.samples=10",
        "--web.read-header-timeout=1s",
        # A connection whose complete request is not being handled would be idle once the
        # header timeout ran out, and closed after this: only a busy one outlives both.
        "--web.idle-timeout=1s",
    ]
    # Not waiting for readiness: the scrape waits about 4s for the first collection.
    with run_exporter(args, tmp_path, wait_ready=False) as exporter:
        started = time.monotonic()
        status, body = exporter.get("/metrics?collect[]=synthetic")
        assert status == 200 and b"hw_synthetic_value_0" in body
        assert time.monotonic() - started > 2  # it really outlived both timeouts


@pytest.mark.parametrize("first", ["/-/healthy", "/nope"])
def test_half_a_request_pipelined_behind_a_whole_one_gets_the_header_timeout(
    tmp_path: Path, first: str
) -> None:
    header, idle = 1.0, 60.0
    args = [
        "--collector.disable-defaults",
        f"--web.read-header-timeout={header}s",
        f"--web.idle-timeout={idle}s",
    ]
    with (
        run_exporter(args, tmp_path) as exporter,
        socket.create_connection(("127.0.0.1", exporter.port), timeout=30) as sock,
    ):
        # One send: a complete request (a route's, or a 404), then the start of the next one.
        sock.sendall(f"GET {first} HTTP/1.1\r\nHost: x\r\n\r\n".encode() + HALF_REQUEST)
        data = b""
        while not data.endswith((b"Healthy.\n", b"Not Found")):
            data += sock.recv(65536)
        answered = time.monotonic()
        assert data.startswith(b"HTTP/1.1 200" if first == "/-/healthy" else b"HTTP/1.1 404")
        (closed,) = await_closed([sock], timeout=30)
        assert closed - answered < header + 5  # the header timeout, not the idle one


def test_a_request_after_a_404_gets_its_own_header_timeout(tmp_path: Path) -> None:
    header = 3.0
    args = [
        "--collector.disable-defaults",
        f"--web.read-header-timeout={header}s",
        "--web.idle-timeout=60s",
    ]
    with (
        run_exporter(args, tmp_path) as exporter,
        socket.create_connection(("127.0.0.1", exporter.port), timeout=30) as sock,
    ):
        asked = time.monotonic()
        assert http_exchange(sock, "/nope").startswith(b"HTTP/1.1 404")  # aiohttp's own answer
        time.sleep(header * 2 / 3)
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\n")  # begun within the 404's header timeout ...
        time.sleep(header / 2)
        sock.sendall(b"Host: x\r\n\r\n")  # ... finished after it, within its own
        assert time.monotonic() - asked > header
        try:
            answer = sock.recv(65536)
        except ConnectionResetError:
            answer = b""
        assert answer.startswith(b"HTTP/1.1 200"), "closed by the 404's header timeout"


def test_head_on_a_kept_alive_connection_sends_headers_only(tmp_path: Path) -> None:
    args = [*FIXTURE_ARGS, "--collector.synthetic", "--collector.synthetic.samples=30000"]
    with (
        run_exporter(args, tmp_path) as exporter,
        socket.create_connection(("127.0.0.1", exporter.port), timeout=30) as sock,
    ):
        status, body = exporter.get("/metrics")
        assert status == 200 and len(body) > BODY_CHUNK  # a GET gets it a chunk at a time
        # Pipelined: the second answer must follow the first one's headers at once.
        sock.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith(b"Healthy.\n"):
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert f"\r\nContent-Length: {len(body)}\r\n".encode() in head
        assert rest.startswith(b"HTTP/1.1 200"), rest[:100]


@contextlib.contextmanager
def tls_exporter(
    tmp_path: Path, args: list[str], nofile: int
) -> Iterator[tuple[Exporter, ssl.SSLContext]]:
    """The exporter serving TLS only, under RLIMIT_NOFILE ``nofile``; and a client context."""
    pki = make_pki(tmp_path / "pki")
    config = tmp_path / "web.yml"
    config.write_text(
        f"tls_server_config:\n  cert_file: {pki.server}\n  key_file: {pki.server_key}\n"
    )
    port = free_port()
    log = tmp_path / "exporter.log"
    argv = [
        *limited(nofile, nofile),
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.config.file={config}",
        *args,
    ]
    context = client_context(pki)

    def ready() -> bool:
        with contextlib.suppress(OSError):
            return https_get(port, context)[0].startswith(b"HTTP/1.1 200")
        return False

    env = {**os.environ, "PATH": fake_path()}
    with running(argv, log, ready, 60, "exporter", env) as proc:
        yield Exporter(proc, port, log), context


def test_tls_handshakes_count_against_the_connection_bound(tmp_path: Path) -> None:
    nofile, max_connections, silent = 320, 50, 400  # more than the exporter has fds
    timeout = 4.0
    args = [
        "--collector.disable-defaults",
        f"--web.max-connections={max_connections}",
        f"--web.read-header-timeout={timeout}s",
    ]
    with (
        tls_exporter(tmp_path, args, nofile) as (exporter, context),
        # TCP connections that never send a ClientHello, and ones that stop halfway through.
        idle_sockets(exporter.port, silent // 2) as quiet,
        idle_sockets(exporter.port, silent // 2, CLIENT_HELLO_START) as stalled,
    ):
        opened = time.monotonic()
        data, _ = https_get(exporter.port, context, "/metrics")
        # Admitted at once (a waiting handshake made room), not after the handshake timeout.
        assert time.monotonic() - opened < timeout / 2
        assert data.startswith(b"HTTP/1.1 200") and b"hwcache_build_info" in data
        assert psutil.Process(exporter.proc.pid).num_fds() < max_connections + 40
        closed = await_closed(quiet + stalled, timeout=30)
        assert max(closed) - opened < timeout + 5  # the last ones by the handshake timeout
        assert https_get(exporter.port, context)[0].startswith(b"HTTP/1.1 200")
    assert traceback_lines(exporter) == 0
    assert len(exporter.logs().splitlines()) < 20, exporter.logs()


def test_soft_fd_limit_is_raised_or_connections_are_capped(tmp_path: Path) -> None:
    args = ["--collector.disable-defaults", "--web.max-connections=100"]
    need = 100 + FD_RESERVE
    with run_exporter(args, tmp_path, command=limited(64, 4096)) as exporter:
        assert psutil.Process(exporter.proc.pid).rlimit(psutil.RLIMIT_NOFILE) == (need, 4096)
        assert f"open files limit {need}, --web.max-connections=100" in exporter.logs()
    with run_exporter(args, tmp_path, command=limited(300, 300)) as exporter:
        assert "open files limit 300 is too low for --web.max-connections=100" in exporter.logs()
        assert "serving at most 75 connections" in exporter.logs()
        with idle_sockets(exporter.port, 120):
            assert exporter.get("/-/healthy")[0] == 200
            assert psutil.Process(exporter.proc.pid).num_fds() < 75 + 40


def test_throttled_warning_counts_what_it_left_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttled = Throttled(10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for _ in range(100):
            throttled.warn("cannot accept: %s", "EMFILE")
        now[0] = 10.5
        throttled.warn("cannot accept: %s", "EMFILE")
    assert [r.getMessage() for r in caplog.records] == [
        "cannot accept: EMFILE",
        "cannot accept: EMFILE (99 more since the last such message)",
    ]


async def test_out_of_fds_accept_errors_are_one_line(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    server = await loop.create_server(asyncio.Protocol, sock=listener)
    throttled = Throttled(3600.0)
    handle, failures, third = accept_error_handler(throttled), [0], asyncio.Event()

    def counting(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        handle(loop, context)
        failures[0] += 1
        if failures[0] == 3:
            third.set()

    loop.set_exception_handler(counting)
    # Connected (in the backlog) before the limit drops; the server then cannot accept them.
    clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    try:
        with caplog.at_level(logging.DEBUG):
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
            # asyncio retries a second after each failure.
            await asyncio.wait_for(third.wait(), 20)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        loop.set_exception_handler(None)
        for client in clients:
            client.close()
        server.close()
        await server.wait_closed()
    # asyncio reports the failure once per pending connection and retry: many, one line.
    assert throttled.count == failures[0] - 1 >= 2
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages == [
        (logging.WARNING, "cannot accept connections: Too many open files; retrying")
    ]
    assert not any(r.exc_info for r in caplog.records)
