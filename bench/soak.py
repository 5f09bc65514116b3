#!/usr/bin/env python3
"""Soak test: run the exporter on loopback, hammer it with mixed requests, report RSS and errors.

Usage: python bench/soak.py [--duration 30s] [--concurrency 32] [-- exporter flags...]
Exits 0 when every request got a non-5xx answer (503 from --web.max-requests is counted
separately, not as an error) and the exporter stopped cleanly; 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

from collectors.toolkit.durations import parse_duration

REPO = Path(__file__).resolve().parents[1]
DEFAULT_EXPORTER_ARGS = [
    "--collector.synthetic",
    "--collector.synthetic.samples=2000",
    "--collector.synthetic.delay=0.5",
    "--collector.synthetic.interval=5s",
]
MiB = 1024 * 1024


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request_mix(collectors: list[str]) -> list[tuple[str, str, dict[str, str]]]:
    """One round of the request mix: method, path (``{n}`` = a unique number), headers."""
    gzip = {"Accept-Encoding": "gzip"}
    openmetrics = {"Accept": "application/openmetrics-text; version=1.0.0"}
    first = collectors[0] if collectors else "cpu"
    return [
        ("GET", "/metrics", {}),
        ("GET", "/metrics", gzip),
        ("GET", "/metrics", {**gzip, "X-Prometheus-Scrape-Timeout-Seconds": "10"}),
        ("GET", "/metrics", openmetrics),
        ("GET", f"/metrics?collect[]={first}", {}),
        ("GET", f"/metrics?exclude[]={first}", gzip),
        ("GET", "/metrics?soak={n}", {}),  # a response-cache miss every time
        ("GET", "/metrics?name[]=hwcache_collector_success&soak={n}", gzip),
        ("GET", "/metrics?collect[]=no-such-collector", {}),  # 400
        ("GET", "/cache/stats", {}),
        ("GET", "/", {}),
        ("GET", "/-/healthy", {}),
        ("POST", f"/cache/invalidate?collector={first}", {}),  # 200, then 429 (rate limit)
    ]


@dataclass
class Stats:
    """Counters shared by the load workers."""

    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


async def worker(
    session: aiohttp.ClientSession,
    mix: list[tuple[str, str, dict[str, str]]],
    counter: itertools.count[int],
    stop_at: float,
    stats: Stats,
) -> None:
    """Send requests from the mix until ``stop_at``."""
    while time.monotonic() < stop_at:
        n = next(counter)
        method, path, headers = mix[n % len(mix)]
        began = time.monotonic()
        try:
            async with session.request(method, path.format(n=n), headers=headers) as resp:
                await resp.read()
                stats.statuses[str(resp.status)] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            stats.errors[type(exc).__name__] += 1
        stats.latencies.append(time.monotonic() - began)


async def sample_rss(
    proc: psutil.Process, stop_at: float, timeline: list[tuple[float, int]]
) -> None:
    """Record the exporter's RSS about once a second."""
    started = time.monotonic()
    while time.monotonic() < stop_at:
        with contextlib.suppress(psutil.Error):
            timeline.append((time.monotonic() - started, proc.memory_info().rss))
        await asyncio.sleep(1.0)


async def hammer(
    base: str, proc: psutil.Process, collectors: list[str], duration: float, concurrency: int
) -> tuple[Stats, list[tuple[float, int]], float]:
    """Run the workers for ``duration`` seconds; return stats, RSS timeline, elapsed time."""
    stats = Stats()
    timeline: list[tuple[float, int]] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    began = time.monotonic()
    stop_at = began + duration
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:
        mix, counter = request_mix(collectors), itertools.count()
        await asyncio.gather(
            sample_rss(proc, stop_at, timeline),
            *(worker(session, mix, counter, stop_at, stats) for _ in range(concurrency)),
        )
    return stats, timeline, time.monotonic() - began


def start_exporter(args: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """``python -m exporter`` on loopback, output to ``log``; waits until /-/ready."""
    argv = [sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{port}", *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"exporter exited {proc.returncode}:\n{log.read_text()}")
        url = f"http://127.0.0.1:{port}/-/ready"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as resp:
            if resp.status == 200:
                return proc
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"exporter not ready after 60s:\n{log.read_text()}")


def enabled_collectors(port: int) -> list[str]:
    """Collector names from /cache/stats."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/cache/stats", timeout=10) as resp:
        return list(json.load(resp)["collectors"])


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``."""
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, int(q * 100) - 1)]


def main() -> int:
    """Parse flags, run the soak, print the report; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="30s", help="how long to hammer (e.g. 30s, 5m)")
    parser.add_argument("--concurrency", type=int, default=32, help="parallel clients")
    parser.add_argument("exporter_args", nargs="*", help="more exporter flags (after --)")
    opts = parser.parse_args()
    duration = parse_duration(opts.duration)
    args = [*DEFAULT_EXPORTER_ARGS, *opts.exporter_args]  # later flags win
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hwcache-soak-") as tmp:
        log = Path(tmp) / "exporter.log"
        proc = start_exporter(args, port, log)
        try:
            ps = psutil.Process(proc.pid)
            collectors = enabled_collectors(port)
            warm = asyncio.run(hammer(f"http://127.0.0.1:{port}", ps, collectors, 2.0, 4))[0]
            time.sleep(1.0)  # let the warm-up's keep-alive connections close
            before = (ps.memory_info().rss, ps.num_fds(), ps.num_threads())
            stats, timeline, elapsed = asyncio.run(
                hammer(f"http://127.0.0.1:{port}", ps, collectors, duration, opts.concurrency)
            )
            time.sleep(1.0)
            after = (ps.memory_info().rss, ps.num_fds(), ps.num_threads())
            children = len(ps.children(recursive=True))
        finally:
            proc.terminate()
            try:
                code = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        text = log.read_text(errors="replace")
    total = sum(stats.statuses.values()) + sum(stats.errors.values())
    server_errors = sum(v for k, v in stats.statuses.items() if k.startswith("5") and k != "503")
    peak = max((rss for _, rss in timeline), default=after[0])
    print(f"exporter flags: {' '.join(args)}")
    print(f"collectors: {', '.join(collectors)}; warm-up requests: {sum(warm.statuses.values())}")
    print(
        f"duration {elapsed:.1f}s, concurrency {opts.concurrency}: {total} requests "
        f"({total / elapsed:.0f}/s), statuses {dict(sorted(stats.statuses.items()))}, "
        f"client errors {dict(stats.errors) or 0}"
    )
    print(
        f"latency p50 {percentile(stats.latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(stats.latencies, 0.99) * 1000:.1f} ms"
    )
    print(
        f"RSS before {before[0] / MiB:.1f} MiB, after {after[0] / MiB:.1f} MiB, "
        f"peak {peak / MiB:.1f} MiB; fds {before[1]} -> {after[1]}; "
        f"threads {before[2]} -> {after[2]}; child processes after {children}"
    )
    marks = timeline[:: max(1, len(timeline) // 6)]
    print("RSS timeline: " + ", ".join(f"{t:.0f}s {rss / MiB:.1f} MiB" for t, rss in marks))
    bad_log = [line for line in text.splitlines() if "level=error" in line or "Traceback" in line]
    print(f"exporter exit status {code}; error log lines {len(bad_log)}")
    for line in bad_log[:5]:
        print("  " + line)
    failed = stats.errors or server_errors or code != 0 or bad_log
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
