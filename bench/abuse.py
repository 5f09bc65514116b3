#!/usr/bin/env python3
"""Abuse on loopback: idle sockets and TLS half-handshakes under a low fd limit, a wrong-password
flood, clients that never read a large body.

Usage: python bench/abuse.py [--phases idle,tls,password,slow] [--idle 1100] [--nofile 1024]
[--slow 200] [--samples 100000] [--duration 30s] [--exporter-root DIR] [-- exporter flags...].
Bounded in time (about duration + 20s per phase). ``--exporter-root`` runs the exporter of
another checkout (an older commit, for before/after numbers in one run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import socket
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from abuse_auth import Usage, password_phase, tls_config, tls_phase, users_config  # noqa: E402

from collectors.toolkit.durations import parse_duration  # noqa: E402
from tests.support import answers, free_port, running  # noqa: E402

MiB = 1024 * 1024
HALF_REQUEST = b"GET /metr"
TRACEBACK = re.compile(r"Traceback|^\s+File ", re.M)


@dataclass
class Idle:
    """What the idle-socket attacker and the scraper saw."""

    opened: int = 0
    connect_failures: int = 0
    closed_by_server: int = 0
    scrapes: Counter[str] = field(default_factory=Counter)
    peak_fds: int = 0


def scrape(base: str, path: str = "/metrics", timeout: float = 10.0) -> str:
    """One GET; the status as text, or the error's name."""
    try:
        with urllib.request.urlopen(base + path, timeout=timeout) as resp:
            resp.read()
            return str(resp.status)
    except urllib.error.HTTPError as err:
        return str(err.code)
    except OSError as exc:
        return type(exc.reason if isinstance(exc, urllib.error.URLError) else exc).__name__


@contextlib.contextmanager
def exporter(
    args: Sequence[str],
    nofile: int,
    log: Path,
    root: Path = REPO,
    ready: str = "/-/ready",
    context: ssl.SSLContext | None = None,
) -> Iterator[tuple[psutil.Process, str]]:
    """``python -m exporter`` (of checkout ``root``) under RLIMIT_NOFILE=nofile, until ``ready``."""
    port = free_port()
    limit = (
        "" if not nofile else f"resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile}));"
    )
    code = f"import resource, runpy; {limit} runpy.run_module('exporter', run_name='__main__')"
    argv = [sys.executable, "-c", code, f"--web.listen-address=127.0.0.1:{port}", *args]
    base = f"{'https' if context else 'http'}://127.0.0.1:{port}"

    def answering() -> bool:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(base + ready, timeout=5, context=context) as resp,
        ):
            return bool(resp.status == 200)
        return False

    probe = answering if context else (lambda: answers(base + ready, 5))
    with running(argv, log, probe, 60, "exporter", cwd=root) as proc:
        yield psutil.Process(proc.pid), base


async def idle_socket(port: int, stop_at: float, idle: Idle, n: int) -> None:
    """Hold one connection that never completes a request; reopen it when the server closes it."""
    while time.monotonic() < stop_at:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        except (OSError, TimeoutError):
            idle.connect_failures += 1
            await asyncio.sleep(1.0)
            continue
        idle.opened += 1
        if n % 2:
            writer.write(HALF_REQUEST)
        try:
            left = stop_at - time.monotonic()
            if await asyncio.wait_for(reader.read(1), max(left, 0.01)) == b"":
                idle.closed_by_server += 1
        except (OSError, TimeoutError):
            pass
        writer.close()
        await asyncio.sleep(1.0)  # an attacker that comes back, not a busy loop


async def idle_phase(proc: psutil.Process, base: str, count: int, duration: float) -> Idle:
    """``count`` idle sockets for ``duration``; one scrape a second meanwhile."""
    idle = Idle()
    port = int(base.rsplit(":", 1)[1])
    stop_at = time.monotonic() + duration
    attackers = [asyncio.create_task(idle_socket(port, stop_at, idle, n)) for n in range(count)]
    await asyncio.sleep(2.0)  # let them connect first
    while time.monotonic() < stop_at - 1:
        began = time.monotonic()
        idle.scrapes[await asyncio.to_thread(scrape, base)] += 1
        with contextlib.suppress(psutil.Error):
            idle.peak_fds = max(idle.peak_fds, proc.num_fds())
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
    await asyncio.gather(*attackers)
    return idle


def status_of(sock: socket.socket) -> str:
    """The status code the server started to send on ``sock`` (peeked, not read), or '-'."""
    try:
        head = sock.recv(12, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return "-"
    except OSError:
        return "reset"
    return head[9:12].decode() if head.startswith(b"HTTP/1.") else ("closed" if not head else "?")


def slow_phase(proc: psutil.Process, base: str, count: int, hold: float) -> list[str]:
    """``count`` clients request /metrics and never read, for ``hold`` seconds; report lines."""
    port = int(base.rsplit(":", 1)[1])
    with urllib.request.urlopen(base + "/metrics", timeout=60) as resp:
        body = len(resp.read())
    time.sleep(2.0)
    before, fds_before = proc.memory_info().rss, proc.num_fds()
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(sock)
    peak, peak_fds, probes = before, fds_before, Counter[str]()
    stop_at = time.monotonic() + hold
    while time.monotonic() < stop_at:
        began = time.monotonic()
        probes[scrape(base, "/metrics", timeout=5)] += 1
        peak = max(peak, proc.memory_info().rss)
        peak_fds = max(peak_fds, proc.num_fds())
        time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
    statuses = Counter(status_of(sock) for sock in socks)
    for sock in socks:
        sock.close()
    time.sleep(5.0)
    after, fds_after = proc.memory_info().rss, proc.num_fds()
    return [
        f"slow readers: {count} clients, body {body / MiB:.1f} MiB, held {hold:.0f}s",
        f"  what they got (peeked at the end): {dict(sorted(statuses.items()))}",
        f"  scrapes by a reading client meanwhile: {dict(sorted(probes.items()))}",
        f"  RSS before {before / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB "
        f"(+{(peak - before) / MiB:.0f}), 5s after they left {after / MiB:.0f} MiB "
        f"(+{(after - before) / MiB:.0f}); fds {fds_before} -> peak {peak_fds} -> after "
        f"{fds_after}",
    ]


def log_report(log: Path) -> str:
    """Size, lines and traceback lines of the exporter log."""
    text = log.read_text(errors="replace")
    return (
        f"  exporter log: {len(text.encode()) / 1024:.0f} KiB, {text.count(chr(10))} lines, "
        f"{len(TRACEBACK.findall(text))} traceback lines"
    )


def main() -> int:
    """Run the chosen phases and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default="idle,tls,password,slow", help="which, in order")
    parser.add_argument("--idle", type=int, default=1100, help="idle sockets/handshakes to hold")
    parser.add_argument("--nofile", type=int, default=1024, help="exporter RLIMIT_NOFILE")
    parser.add_argument("--slow", type=int, default=200, help="clients that never read")
    parser.add_argument("--samples", type=int, default=100000, help="synthetic samples")
    parser.add_argument("--duration", default="30s", help="length of each phase")
    parser.add_argument("--exporter-root", type=Path, default=REPO, help="checkout to run")
    parser.add_argument("exporter_args", nargs="*", help="more exporter flags (after --)")
    opts = parser.parse_args()
    duration = parse_duration(opts.duration)
    root = opts.exporter_root.resolve()
    # The attacker needs more fds than the exporter gets.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, opts.idle * 2 + 256)), hard))
    base_args = ["--collector.disable-defaults", "--collector.cpu", *opts.exporter_args]
    big = [
        "--collector.disable-defaults",
        "--collector.synthetic",
        f"--collector.synthetic.samples={opts.samples}",
        *opts.exporter_args,
    ]
    print(f"exporter from {'this checkout' if root == REPO else root}")
    with tempfile.TemporaryDirectory(prefix="hwcache-abuse-") as tmp:
        for phase in opts.phases.split(","):
            log = Path(tmp) / f"{phase}.log"
            if phase == "idle":
                with exporter(base_args, opts.nofile, log, root) as (proc, base):
                    usage = Usage(proc)
                    usage.sample()
                    idle = asyncio.run(idle_phase(proc, base, opts.idle, duration))
                    after = scrape(base)
                    usage.sample()
                print(
                    f"idle sockets: {opts.idle} held {duration:.0f}s, exporter RLIMIT_NOFILE "
                    f"{opts.nofile}, flags {' '.join(base_args)}"
                )
                print(
                    f"  scrapes meanwhile (one a second, 10s timeout): "
                    f"{dict(sorted(idle.scrapes.items()))}; scrape after: {after}"
                )
                print(
                    f"  connections opened {idle.opened}, connect failures "
                    f"{idle.connect_failures}, closed by the server {idle.closed_by_server}"
                )
                usage.fds.insert(-1, idle.peak_fds)
                print(usage.line())
            elif phase == "tls":
                config, context = tls_config(Path(tmp))
                args = [*base_args, f"--web.config.file={config}"]
                with exporter(args, opts.nofile, log, root, context=context) as (proc, base):
                    port = int(base.rsplit(":", 1)[1])
                    for line in asyncio.run(
                        tls_phase(Usage(proc), port, context, opts.idle, duration)
                    ):
                        print(line)
            elif phase == "password":
                config, users = users_config(Path(tmp), int(duration) + 5)
                args = [*base_args, f"--web.config.file={config}"]
                with exporter(args, 0, log, root, ready="/-/healthy") as (proc, base):
                    port = int(base.rsplit(":", 1)[1])
                    for line in asyncio.run(password_phase(Usage(proc), port, users, duration)):
                        print(line)
            elif phase == "slow":
                with exporter(big, 0, log, root) as (proc, base):
                    for line in slow_phase(proc, base, opts.slow, duration):
                        print(line)
            else:
                parser.error(f"unknown phase {phase!r}")
            print(log_report(log))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
