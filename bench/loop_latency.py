#!/usr/bin/env python3
"""Event-loop responsiveness: /-/healthy latency while big bodies are refreshed and rendered.

Usage: python bench/loop_latency.py [--duration 20s] [--samples 100000] [--clients 2]
       [-- exporter flags...]

Starts the exporter on loopback with one synthetic collector of ``--samples`` samples
refreshed every 2 s and ``--cache.dir`` set; ``--clients`` load clients (in a child process)
request /metrics with varied Accept headers (a new ``version=1.0.N`` each time, escaping
variants, gzip) and distinct ``name[]`` filters, while this process probes /-/healthy every
10 ms (open loop: counted from each probe's scheduled time, whatever earlier probes do)
and reports its p50/p99/max (goal: p99 <= 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import itertools
import json
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collectors.toolkit.durations import parse_duration  # noqa: E402
from tests.support import answers, free_port, running  # noqa: E402

MiB = 1024 * 1024

ESCAPINGS = ("underscores", "dots", "values", "allow-utf-8")


def request_for(n: int) -> tuple[str, dict[str, str]]:
    """The n-th load request: path and headers (every Accept and filter is new or varied)."""
    gzip = {"Accept-Encoding": "gzip"} if n % 2 else {}
    kind = n % 4
    if kind == 0:
        return "/metrics", {**gzip, "Accept": f"application/openmetrics-text;version=1.0.{n}"}
    if kind == 1:
        accept = f"text/plain;version=1.0.0;escaping={ESCAPINGS[n // 4 % 4]}"
        return "/metrics", {**gzip, "Accept": accept}
    if kind == 2:
        return f"/metrics?name[]=hw_synthetic_value_{n % 10}&name[]=nope_{n}", gzip
    return "/metrics", gzip


async def load(base: str, duration: float, clients: int) -> Counter[str]:
    """Send the request mix from ``clients`` connections for ``duration`` seconds."""
    statuses: Counter[str] = Counter()
    counter = itertools.count()
    stop_at = time.monotonic() + duration
    timeout = aiohttp.ClientTimeout(total=120)

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop_at:
            path, headers = request_for(next(counter))
            try:
                async with session.get(path, headers=headers) as resp:
                    await resp.read()
                    statuses[str(resp.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                statuses[type(exc).__name__] += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return statuses


def load_process(base: str, duration: float, clients: int, out: multiprocessing.Queue[str]) -> None:
    """Child process entry: run the load, report the status counts as JSON."""
    out.put(json.dumps(asyncio.run(load(base, duration, clients))))


async def probe(base: str, duration: float, interval: float = 0.01) -> list[float]:
    """GET /-/healthy every ``interval`` s, not waiting for earlier answers; latencies.

    Open loop: each latency counts from the probe's scheduled start, so a stalled loop is
    charged to every probe it held back, not just to one that was waiting.
    """
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(base, connector=connector) as session:

        async def one(scheduled: float) -> None:
            async with session.get("/-/healthy") as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            latencies.append(time.perf_counter() - scheduled)

        tasks = []
        # This process's own garbage-collector passes (tens of ms over its thousands of
        # probe tasks) would be charged to the exporter: none while measuring.
        gc.disable()
        try:
            began = time.perf_counter()
            for n in range(int(duration / interval)):
                scheduled = began + n * interval
                await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
                tasks.append(asyncio.create_task(one(scheduled)))
            await asyncio.gather(*tasks)
        finally:
            gc.enable()
    return latencies


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``."""
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, int(q * 100) - 1)]


def slow_steps(log: str) -> list[tuple[float, str]]:
    """asyncio debug mode's "Executing <Task ...> took N seconds" lines: time and coroutine."""
    steps = []
    for match in re.finditer(r"Executing <(.*?)> took ([0-9.]+) seconds", log):
        where = re.search(r"coro=<(\S+) (?:running|done, defined) at (\S+)>", match[1])
        steps.append((float(match[2]), " at ".join(where.groups()) if where else match[1][:120]))
    return sorted(steps, reverse=True)


def stats(port: int) -> dict[str, object]:
    """The exporter's /cache/stats JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/cache/stats")
    data: dict[str, object] = json.loads(conn.getresponse().read())
    conn.close()
    return data


def main() -> int:
    """Run the exporter, the load and the probe; print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="20s", help="how long to measure (e.g. 20s)")
    parser.add_argument("--samples", type=int, default=100_000, help="synthetic samples")
    parser.add_argument("--clients", type=int, default=2, help="concurrent load clients")
    parser.add_argument(
        "--asyncio-debug",
        action="store_true",
        help="list the slowest loop steps (asyncio debug mode: slows the exporter a lot, so "
        "its latencies are not comparable)",
    )
    parser.add_argument("exporter_args", nargs="*", help="more exporter flags (after --)")
    opts = parser.parse_args()
    duration = parse_duration(opts.duration)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hwcache-loop-") as tmp:
        args = [
            "--collector.disable-defaults",
            "--collector.synthetic",
            f"--collector.synthetic.samples={opts.samples}",
            "--collector.synthetic.interval=2s",
            f"--cache.dir={tmp}/cache",
            *opts.exporter_args,
        ]
        argv = [sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{port}", *args]
        ready = f"http://127.0.0.1:{port}/-/ready"
        log = Path(tmp) / "exporter.log"
        env = {**os.environ, "PYTHONASYNCIODEBUG": "1"} if opts.asyncio_debug else None
        with running(argv, log, lambda: answers(ready), 120, "exporter", env) as proc:
            ps = psutil.Process(proc.pid)
            base = f"http://127.0.0.1:{port}"
            idle = asyncio.run(probe(base, 2.0))
            queue: multiprocessing.Queue[str] = multiprocessing.Queue()
            child = multiprocessing.Process(
                target=load_process, args=(base, duration, opts.clients, queue)
            )
            child.start()
            loaded = asyncio.run(probe(base, duration))
            statuses = json.loads(queue.get(timeout=300))
            child.join()
            rss = ps.memory_info().rss
            cache_stats = stats(port)
        slow = slow_steps(log.read_text(errors="replace"))
    synthetic = cache_stats["collectors"]["synthetic"]  # type: ignore[index]
    response_cache = cache_stats["response_cache"]
    print(f"exporter flags: {' '.join(args)}")
    print(f"load: {opts.clients} clients for {duration:.0f}s, statuses {dict(statuses)}")
    print(
        f"synthetic refreshes {synthetic['refreshes']}, last duration {synthetic['duration_seconds']:.2f}s"
    )
    print(f"response cache: {response_cache}")
    print(f"RSS after load {rss / MiB:.1f} MiB")
    for name, values in (("idle", idle), ("under load", loaded)):
        print(
            f"/-/healthy {name}: n={len(values)} p50 {percentile(values, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(values, 0.99) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"
        )
    for seconds, where in slow[:8]:
        print(f"slow loop step {seconds * 1000:.0f} ms: {where}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
