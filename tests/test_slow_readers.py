"""Clients that never read a large body: they keep their request slot, cost little memory, get cut."""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import Handler

from exporter.limits import BODY_CHUNK, write_response
from tests.support import FIXTURE_ARGS, Exporter, answers, run_exporter, wait_for

MiB = 1024 * 1024
# About 5.6 MiB of text: more than loopback's socket buffers can take from a client that
# does not read (4 MiB net.ipv4.tcp_wmem maximum), so writing it never finishes by itself.
BIG = [*FIXTURE_ARGS, "--collector.synthetic", "--collector.synthetic.samples=100000"]
REQUEST = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"


@contextlib.contextmanager
def non_readers(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` clients with a tiny receive buffer that request /metrics and never read."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(REQUEST)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``condition`` (it waits on sockets or the exporter itself) until true."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"


def statuses(socks: list[socket.socket]) -> Counter[int]:
    """Each socket's response status, peeked (nothing is read); waits for all of them."""
    by_fd = {sock.fileno(): sock for sock in socks}
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    found: dict[int, int] = {}

    def peek() -> bool:
        for fd, _ in poller.poll(1000):
            found[fd] = int(by_fd[fd].recv(12, socket.MSG_PEEK)[9:12])
            poller.unregister(fd)
        return len(found) == len(socks)

    wait_until(peek, what="every client to get a status line")
    return Counter(found.values())


def rss(exporter: Exporter) -> int:
    """The exporter's resident set size in bytes."""
    return int(psutil.Process(exporter.proc.pid).memory_info().rss)


def full_get(exporter: Exporter) -> bytes:
    """GET /metrics, the whole body (checked against Content-Length by urllib)."""
    status, body = exporter.get("/metrics")
    assert status == 200
    return body


def test_non_readers_keep_their_slots_and_cost_little_memory(tmp_path: Path) -> None:
    clients, max_requests = 200, 40
    args = [*BIG, f"--web.max-requests={max_requests}", "--web.write-timeout=10m"]
    with run_exporter(args, tmp_path) as exporter:
        body = full_get(exporter)  # also fills the response cache: every client shares it
        assert len(body) > 5 * MiB and body.endswith(b"\n")
        assert b'hw_synthetic_value_9{device="dev999",sensor="s99"} 99999.0' in body
        before = rss(exporter)
        with non_readers(exporter.port, clients) as socks:
            # The body is being written to the first 40 (they hold the slots), the rest got 503.
            assert statuses(socks) == {200: max_requests, 503: clients - max_requests}
            assert exporter.get("/metrics")[0] == 503
            during = rss(exporter)
            assert during - before < 64 * MiB, f"RSS grew {(during - before) / MiB:.0f} MiB"
        # Once they are gone the slots are free and the memory is back.
        wait_until(lambda: answers(exporter.base + "/metrics"), what="a free slot")
        wait_until(lambda: rss(exporter) - before < 32 * MiB, what="RSS to come back")
        assert full_get(exporter) == body


def reset_by_server(socks: list[socket.socket], timeout: float) -> None:
    """Wait until the server reset (or closed) every socket; nothing is read."""
    poller = select.poll()
    for sock in socks:
        poller.register(sock, select.POLLERR | select.POLLHUP | select.POLLRDHUP)
    gone: set[int] = set()

    def check() -> bool:
        gone.update(fd for fd, _ in poller.poll(1000))
        return len(gone) == len(socks)

    wait_until(check, timeout, "the server to cut the non-reading clients")


def test_a_client_that_does_not_read_is_cut_after_the_write_timeout(tmp_path: Path) -> None:
    args = [*BIG, "--web.max-requests=2", "--web.write-timeout=2s"]
    with run_exporter(args, tmp_path) as exporter:
        full_get(exporter)  # rendered and stored: both clients get their body at once
        with non_readers(exporter.port, 2) as socks:
            assert statuses(socks) == {200: 2}
            started = time.monotonic()
            # The slots are held while the bodies are unsent.
            assert exporter.get("/metrics")[0] == 503
            reset_by_server(socks, timeout=30)
            assert time.monotonic() - started > 1
            wait_until(lambda: answers(exporter.base + "/metrics"), what="a free slot")
        assert "read nothing for 2s (--web.write-timeout)" in exporter.logs()
    assert "Traceback" not in exporter.logs()


def test_clients_that_leave_mid_body_leave_nothing_behind(tmp_path: Path) -> None:
    with run_exporter(BIG, tmp_path) as exporter:
        body = full_get(exporter)
        fds = psutil.Process(exporter.proc.pid).num_fds()
        for _ in range(10):
            with socket.create_connection(("127.0.0.1", exporter.port), timeout=30) as sock:
                sock.sendall(REQUEST)
                assert sock.recv(65536).startswith(b"HTTP/1.1 200")
                # Reset, with most of the body unread (and more still to write).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_for(lambda: psutil.Process(exporter.proc.pid).num_fds() <= fds, "their fds closed")
        assert full_get(exporter) == body
    assert "Traceback" not in exporter.logs() and "level=error" not in exporter.logs()


def test_at_the_connection_limit_busy_connections_stay_and_new_ones_are_refused(
    tmp_path: Path,
) -> None:
    args = [*BIG, "--web.max-connections=3", "--web.write-timeout=10m"]
    with run_exporter(args, tmp_path) as exporter, non_readers(exporter.port, 3) as socks:
        assert statuses(socks) == {200: 3}  # three connections busy writing a body
        with socket.create_connection(("127.0.0.1", exporter.port), timeout=30) as extra:
            extra.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):  # reset: our request was unread
                assert extra.recv(100) == b""  # closed at once, unanswered: no room
        poller = select.poll()
        for sock in socks:
            poller.register(sock, select.POLLERR | select.POLLHUP | select.POLLRDHUP)
        assert poller.poll(0) == []  # the busy ones were not closed to make room
        socks[0].close()
        wait_until(lambda: answers(exporter.base + "/-/healthy"), what="room for a connection")
        assert "refused a new connection" in exporter.logs()


async def test_large_bodies_are_streamed_intact(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
) -> None:
    big = bytes(range(256)) * (BODY_CHUNK // 64)  # four chunks and a bit of binary
    sent: list[web.StreamResponse] = []

    async def handler(request: web.Request) -> web.Response:
        body = big if request.path == "/big" else b"small"
        return web.Response(body=body, headers={"Content-Encoding": "gzip", "X-Kept": "1"})

    @web.middleware
    async def sending(request: web.Request, handler: Handler) -> web.StreamResponse:
        sent.append(await write_response(request, await handler(request)))
        return sent[-1]

    app = web.Application(middlewares=[sending])
    app.router.add_get("/{name}", handler)
    client = await aiohttp_client(app)
    resp = await client.get("/big", auto_decompress=False)
    assert await resp.read() == big and resp.headers["X-Kept"] == "1"
    assert resp.headers["Content-Length"] == str(len(big))
    assert resp.headers["Content-Encoding"] == "gzip"
    assert type(sent[-1]) is web.StreamResponse  # written in chunks by write_response
    head = await client.head("/big")
    assert head.headers["Content-Length"] == str(len(big)) and await head.read() == b""
    assert type(sent[-1]) is web.Response  # HEAD: written whole, and aiohttp sends no body
    assert await (await client.get("/small", auto_decompress=False)).read() == b"small"
    assert type(sent[-1]) is web.Response  # small: written whole
