#!/usr/bin/env python3
"""Remote BMCs over IPMI: real ipmitool against OpenIPMI ipmi_sim instances behind /probe.

Usage: python bench/probe_ipmi.py [--targets 20] [--max-polls 4] [--dup 3]
       [--cached-scrapes 2000] [--timeout 300]

Starts ``--targets`` ipmi_sim BMCs (tests/fixtures/ipmi_sim, one loopback UDP port each) and
the exporter with an ``ipmi`` module (interval 1h), puts a wrapper that logs every ipmitool
run's start and end first on its PATH, then scrapes every target ``--dup`` times at once.
Reports polls per target (goal: exactly 1), ipmitool runs per poll, the peak number of
targets polled at once (goal: <= --max-polls) and of ipmitool processes, poll durations, the
exporter's CPU (with its children: the ipmitool runs) for that round, its RSS per cached
target, then p50/p99 of ``--cached-scrapes`` sequential cached /probe scrapes (goal: p99
<= 5 ms). Needs openipmi and ipmitool (make debian-deps).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
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

from tests.ipmi_sim import PASSWORD, USER, Run, logging_ipmitool, simulator  # noqa: E402
from tests.support import answers, free_port, running  # noqa: E402

MiB = 1024 * 1024


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values``."""
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def port_of(args: str) -> int:
    """The ``-p PORT`` of an ipmitool command line."""
    words = args.split()
    return int(words[words.index("-p") + 1])


def peaks(events: list[Run]) -> tuple[int, int]:
    """(peak targets with an ipmitool running, peak ipmitool processes), by a sweep."""
    running_by_port: Counter[int] = Counter()
    peak_targets = peak_runs = 0
    for run in sorted(events, key=lambda r: (r.at_ns, r.event == "start")):
        running_by_port[port_of(run.args)] += 1 if run.event == "start" else -1
        peak_targets = max(peak_targets, sum(1 for n in running_by_port.values() if n > 0))
        peak_runs = max(peak_runs, sum(running_by_port.values()))
    return peak_targets, peak_runs


def poll_spans(events: list[Run]) -> list[float]:
    """Seconds from each target's first ipmitool start to its last end."""
    spans: dict[int, list[int]] = {}
    for run in events:
        spans.setdefault(port_of(run.args), []).append(run.at_ns)
    return [(max(t) - min(t)) / 1e9 for t in spans.values()]


async def scrape_all(base: str, targets: list[str], dup: int) -> tuple[float, Counter[str]]:
    """Every target ``dup`` times at once; seconds taken and success values seen."""
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": "120"}
    results: Counter[str] = Counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(target: str) -> None:
            params = {"module": "bmc", "target": target}
            async with http.get(f"{base}/probe", params=params, headers=headers) as response:
                text = await response.text()
            line = next(
                (x for x in text.splitlines() if x.startswith("hwcache_collector_success{")), ""
            )
            results[line.rsplit(" ", 1)[-1] if line else f"HTTP {response.status}"] += 1

        started = time.monotonic()
        await asyncio.gather(*(one(t) for t in targets for _ in range(dup)))
    return time.monotonic() - started, results


async def cached_latencies(base: str, targets: list[str], count: int) -> list[float]:
    """Sequential scrapes cycling over the targets; seconds each."""
    latencies = []
    async with aiohttp.ClientSession() as http:
        for index in range(count):
            params = {"module": "bmc", "target": targets[index % len(targets)]}
            started = time.perf_counter()
            async with http.get(f"{base}/probe", params=params) as response:
                await response.read()
            latencies.append(time.perf_counter() - started)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--max-polls", type=int, default=4)
    parser.add_argument("--dup", type=int, default=3, help="concurrent scrapes per target")
    parser.add_argument("--cached-scrapes", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        ports = []
        for index in range(args.targets):
            (work / f"bmc{index}").mkdir()
            ports.append(stack.enter_context(simulator(work / f"bmc{index}")))
        targets = [f"127.0.0.1:{port}" for port in ports]
        ipmitool = logging_ipmitool(work)
        (work / "pass").write_text(PASSWORD + "\n")
        module = {
            "driver": "ipmi",
            "username": USER,
            "password_file": str(work / "pass"),
            "cipher_suite": 3,
            "interval": "1h",
            "timeout": "1m",
            "max_concurrent_polls": args.max_polls,
            "targets": ["127.0.0.1"],
        }
        config = {"max_targets": args.targets, "modules": {"bmc": module}}
        (work / "probe.yml").write_text(json.dumps(config))
        port = free_port()
        argv = [sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{port}"]
        argv += ["--collector.disable-defaults", f"--config.file={work / 'probe.yml'}"]
        argv += [f"--web.max-requests={args.targets * args.dup + 8}"]  # measure the cache
        base = f"http://127.0.0.1:{port}"
        ready = lambda: answers(f"{base}/-/ready")  # noqa: E731
        env = {**os.environ, **ipmitool.env()}
        with running(argv, work / "exporter.log", ready, 60, "exporter", env, REPO) as proc:
            exporter = psutil.Process(proc.pid)
            rss_before = exporter.memory_info().rss
            cpu_before = sum(exporter.cpu_times()[:4])
            coro = scrape_all(base, targets, args.dup)
            took, results = asyncio.run(asyncio.wait_for(coro, args.timeout))
            cpu = sum(exporter.cpu_times()[:4]) - cpu_before
            polled = ipmitool.events()
            again, results_again = asyncio.run(scrape_all(base, targets, 1))
            unchanged = ipmitool.events() == polled
            cached = asyncio.run(cached_latencies(base, targets, args.cached_scrapes))
            rss_after = exporter.memory_info().rss
            events = ipmitool.events()
    starts = [run for run in events if run.event == "start"]
    polls = Counter(port_of(run.args) for run in starts if run.args.endswith("sdr elist"))
    per_target = Counter(polls.get(p, 0) for p in ports)
    peak_targets, peak_runs = peaks(polled)
    spans = poll_spans(polled)
    print(f"targets {args.targets}, {args.dup} concurrent scrapes each, bound {args.max_polls}")
    print(f"first round: {took:.2f} s, exporter CPU with children {cpu:.2f} s, success {results}")
    print(f"polls per target (goal: exactly 1): {dict(sorted(per_target.items()))}")
    print(f"ipmitool runs per poll: {len(starts) / max(1, sum(polls.values())):.2f}")
    print(f"peak targets polled at once (goal <= {args.max_polls}): {peak_targets}")
    print(f"peak ipmitool processes: {peak_runs}")
    print(f"poll duration: mean {statistics.mean(spans):.2f} s, max {max(spans):.2f} s")
    print(f"second round: {again:.2f} s, success {results_again}, no new ipmitool run: {unchanged}")
    growth = (rss_after - rss_before) / MiB
    print(
        f"RSS {rss_before / MiB:.1f} -> {rss_after / MiB:.1f} MiB, "
        f"{growth * 1024 / args.targets:.1f} KiB per cached target"
    )
    print(
        f"cached /probe ({len(cached)} sequential): p50 {percentile(cached, 50) * 1000:.2f} ms, "
        f"p99 {percentile(cached, 99) * 1000:.2f} ms (goal p99 <= 5 ms)"
    )


if __name__ == "__main__":
    main()
