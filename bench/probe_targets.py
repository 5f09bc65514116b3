#!/usr/bin/env python3
"""Remote targets at scale: 1,000 fake Redfish BMCs behind one exporter's /probe.

Usage: python bench/probe_targets.py [--targets 1000] [--rounds 3] [--rate 100] [--scrape-timeout 10]
       [--max-polls 16] [--bmc-latency 0.02] [-- exporter flags...]

Serves ``--targets`` fake BMCs (tests/redfish_faults.py, one loopback port each) from a
child process, starts the exporter with a module allowing them (interval 1h, so every round
after the first must be answered from the cache), then scrapes every target ``--rounds``
times at ``--rate`` scrapes a second, spread like Prometheus spreads its targets. Reports polls per
target (goal: exactly 1), the peak number of targets polled at once as the BMCs saw it (goal:
<= --max-polls), the exporter's RSS per cached target, and p50/p99 of cached /probe scrapes
(goal: p99 <= 5 ms). Bounded: the exporter is stopped after ``--timeout`` seconds at most.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
import psutil
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.redfish_faults import PASSWORD, USER, FaultyRedfish  # noqa: E402
from tests.support import answers, free_port, running  # noqa: E402

MiB = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def raise_fd_limit() -> None:
    """Up to the hard limit: a thousand listening ports plus connections."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Watch:
    """What the BMCs saw: service-root reads (one per poll) and targets being polled at once."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.polls: Counter[int] = Counter()
        self.active: Counter[int] = Counter()
        self.peak = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count by the local port (one per target); answer after a BMC-like delay."""
        port = int(request.transport.get_extra_info("sockname")[1])  # type: ignore[union-attr]
        if request.method == "DELETE":  # a logout (eviction, the exporter stopping): not a poll
            return await handler(request)
        if request.path == "/redfish/v1/":
            self.polls[port] += 1
        self.active[port] += 1
        self.peak = max(self.peak, sum(1 for n in self.active.values() if n))
        try:
            await asyncio.sleep(self.latency)  # requests of different targets overlap here
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            self.active[port] -= 1


def serve_bmcs(count: int, latency: float, conn: Connection) -> None:
    """Child process: ``count`` ports served by one fake BMC app; answers ports, then stats."""
    raise_fd_limit()

    async def main() -> None:
        watch = Watch(latency)
        app = FaultyRedfish().app()
        app.middlewares.append(watch.middleware)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for _ in range(count):
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        conn.send([int(address[1]) for address in runner.addresses])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "report"
        conn.send({"polls": dict(watch.polls), "peak": watch.peak})
        await runner.cleanup()

    asyncio.run(main())


async def scrape_round(
    base: str, targets: list[str], rate: float, scrape_timeout: float
) -> tuple[list[float], Counter[str]]:
    """Scrape every target once, ``rate`` scrapes a second (open loop, as Prometheus spreads
    targets over its interval); latencies counted from each scrape's scheduled start."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": f"{scrape_timeout:g}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(index: int, target: str) -> None:
            scheduled = began + index / rate
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            params = {"module": "bmc", "target": target}
            try:
                async with http.get(f"{base}/probe", params=params, headers=headers) as response:
                    await response.read()
            except aiohttp.ClientError:
                statuses["connection error"] += 1
                return
            latencies.append(loop.time() - scheduled)
            statuses[str(response.status)] += 1

        began = loop.time()
        await asyncio.gather(*(one(i, t) for i, t in enumerate(targets)))
    return latencies, statuses


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values``."""
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100.0, help="scrapes per second")
    parser.add_argument(
        "--scrape-timeout", type=float, default=10.0, help="seconds, sent as Prometheus does"
    )
    parser.add_argument("--max-polls", type=int, default=16)
    parser.add_argument("--bmc-latency", type=float, default=0.02, help="seconds per request")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("flags", nargs="*", help="extra exporter flags (after --)")
    args = parser.parse_args()
    raise_fd_limit()
    parent, child = multiprocessing.Pipe()
    bmcs = multiprocessing.Process(
        target=serve_bmcs, args=(args.targets, args.bmc_latency, child), daemon=True
    )
    bmcs.start()
    ports: list[int] = parent.recv()
    targets = [f"127.0.0.1:{port}" for port in ports]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "pass").write_text(PASSWORD + "\n")
        (work / "probe.yml").write_text(
            json.dumps(
                {
                    "max_targets": args.targets,
                    "max_concurrent_polls": args.max_polls,
                    "modules": {
                        "bmc": {
                            "driver": "redfish",
                            "scheme": "http",
                            "username": USER,
                            "password_file": str(work / "pass"),
                            "interval": "1h",
                            "max_concurrent_polls": args.max_polls,
                            "targets": ["127.0.0.1"],
                        }
                    },
                }
            )
        )
        port = free_port()
        argv = [sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{port}"]
        argv += ["--collector.disable-defaults", f"--config.file={work / 'probe.yml'}"]
        argv += args.flags
        base = f"http://127.0.0.1:{port}"
        ready = lambda: answers(f"{base}/-/ready")  # noqa: E731
        with running(argv, work / "exporter.log", ready, 60, "exporter", cwd=REPO) as proc:
            exporter = psutil.Process(proc.pid)
            rss_before = exporter.memory_info().rss
            rounds = []
            deadline = time.monotonic() + args.timeout
            for _ in range(args.rounds):
                started, cpu = time.monotonic(), sum(exporter.cpu_times()[:2])
                coro = scrape_round(base, targets, args.rate, args.scrape_timeout)
                latencies, statuses = asyncio.run(
                    asyncio.wait_for(coro, max(1.0, deadline - time.monotonic()))
                )
                cpu = sum(exporter.cpu_times()[:2]) - cpu
                rounds.append((time.monotonic() - started, cpu, latencies, statuses))
            rss_after = exporter.memory_info().rss
    parent.send("report")
    seen = parent.recv()
    with contextlib.suppress(Exception):
        bmcs.join(timeout=10)
    polls = Counter(seen["polls"].get(p, 0) for p in ports)
    cached = [lat for _, _, latencies, _ in rounds[1:] for lat in latencies]
    print(f"targets {args.targets}, rounds {args.rounds}, {args.rate:g} scrapes/s")
    for index, (took, cpu, latencies, statuses) in enumerate(rounds, 1):
        print(
            f"round {index}: {took:.2f} s, exporter CPU {cpu:.2f} s, statuses {dict(statuses)}, "
            f"p50 {percentile(latencies, 50) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 99) * 1000:.1f} ms"
        )
    print(f"polls per target over all rounds (goal: exactly 1): {dict(sorted(polls.items()))}")
    print(f"peak targets polled at once (goal <= {args.max_polls}): {seen['peak']}")
    growth = (rss_after - rss_before) / MiB
    print(
        f"RSS {rss_before / MiB:.1f} -> {rss_after / MiB:.1f} MiB, "
        f"{growth * 1024 / args.targets:.1f} KiB per cached target"
    )
    if cached:
        print(
            f"cached /probe (rounds 2..): p50 {percentile(cached, 50) * 1000:.2f} ms, "
            f"p99 {percentile(cached, 99) * 1000:.2f} ms (goal p99 <= 5 ms)"
        )


if __name__ == "__main__":
    main()
