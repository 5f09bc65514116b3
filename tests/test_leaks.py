"""No leaks: 1,000 mixed scrapes with timing-out collectors return fds/threads/processes to baseline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
import pytest

from tests.support import FIXTURE_ARGS, Exporter, run_exporter

SCRAPES = 1000
WARMUP_SCRAPES = 60
CONCURRENCY = 32  # below the default --web.max-requests=40: no scrape may get a 503
SPREAD = 5.0  # seconds the scrapes are spread over (at least): several refresh cycles
FD_SLACK = 2
THREAD_SLACK = 2
SETTLE_TIMEOUT = 15.0
# Collectors whose refresh times out on every attempt (1s timeout, retried every second).
TIMING_OUT = ("synthetic", "smart", "ipmi")
SMART_DEVICES = "HGST_HUS724020ALE640_28,SAMSUNG_MZVL21T0HCLR-00B00_24"
ARGS = [
    *FIXTURE_ARGS,
    "--collector.cpu",
    "--collector.memory",
    "--collector.synthetic",
    "--collector.synthetic.samples=200",
    "--collector.synthetic.delay=5",
    "--collector.smart",
    "--collector.ipmi",
    *(f"--collector.{name}.timeout=1s" for name in TIMING_OUT),
    *(f"--collector.{name}.interval=1s" for name in TIMING_OUT),
    "--collector.error-retry-interval=1s",
    "--web.max-scrape-wait=500ms",  # a scrape waits at most this long for a due refresh
]
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
SCRAPE_TIMEOUT = {SCRAPE_TIMEOUT_HEADER: "1.5"}
OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0; escaping=underscores"}


def scrape_request(i: int) -> tuple[str, dict[str, str]]:
    """The i-th scrape of the mix: cached hits, filters, cache misses, deadlines, formats."""
    kind = i % 10
    if kind == 4:
        return "/metrics?collect[]=cpu&collect[]=memory", {}
    if kind == 5:
        return "/metrics?exclude[]=synthetic", {"Accept-Encoding": "gzip"}
    if kind == 6:
        return f"/metrics?miss={i}", {}  # distinct query string: never a response-cache hit
    if kind == 7:
        return "/metrics", SCRAPE_TIMEOUT
    if kind == 8:
        return "/metrics?collect[]=synthetic&collect[]=smart", {**OPENMETRICS, **SCRAPE_TIMEOUT}
    if kind == 9:
        return f"/metrics?name[]=hw_memory_total_bytes&miss={i}", {"Accept-Encoding": "gzip"}
    return "/metrics", {}


async def drive(base: str, count: int, spread: float, offset: int = 0) -> Counter[str]:
    """Send ``count`` scrapes spread over ``spread``+ seconds; count statuses and cache hits."""
    results: Counter[str] = Counter()
    queue = iter(range(count))
    loop = asyncio.get_running_loop()
    began = loop.time()
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            for n in queue:
                await asyncio.sleep(max(0.0, began + n * spread / count - loop.time()))
                path, headers = scrape_request(offset + n)
                async with session.get(path, headers=headers) as resp:
                    await resp.read()
                    results[f"status_{resp.status}"] += 1
                    results[f"response_{resp.headers.get('X-Hwcache-Response', 'none')}"] += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return results


@dataclass
class Snapshot:
    """Resources held by the exporter process at one moment."""

    fds: int
    threads: int
    children: list[str]

    @classmethod
    def of(cls, proc: psutil.Process) -> Snapshot:
        """Measure ``proc`` now (children listed as ``pid:status:name``)."""
        kids = []
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                kids.append(f"{child.pid}:{child.status()}:{child.name()}")
        return cls(proc.num_fds(), proc.num_threads(), kids)


@dataclass
class ChildSampler:
    """Samples the exporter's child-process count in a thread while scrapes run."""

    proc: psutil.Process
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, len(self.proc.children(recursive=True)))

    @contextlib.contextmanager
    def running(self) -> Iterator[ChildSampler]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


def refreshing(exporter: Exporter) -> list[str]:
    """Collectors with a refresh in flight, per /cache/stats (does not trigger refreshes)."""
    status, body = exporter.get("/cache/stats")
    assert status == 200
    return [n for n, c in json.loads(body)["collectors"].items() if c["refreshing"]]


def settle(exporter: Exporter, proc: psutil.Process, done: Callable[[Snapshot], bool]) -> Snapshot:
    """Wait (bounded) for in-flight refreshes and their tools to finish; return a snapshot."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        if not refreshing(exporter):
            snap = Snapshot.of(proc)
            if done(snap) or time.monotonic() > deadline:
                return snap
        elif time.monotonic() > deadline:
            return Snapshot.of(proc)
        time.sleep(0.1)


def leave_tools_running(exporter: Exporter, proc: psutil.Process) -> int:
    """Start hanging tools right before shutdown (SIGTERM must kill their process groups)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        stats = json.loads(exporter.get("/cache/stats")[1])
        if all(stats["collectors"][n]["expires_at"] <= stats["now"] for n in ("smart", "ipmi")):
            break
        time.sleep(0.1)
    # Waits 0.1s (scrape timeout minus the 0.5s offset), then serves stale data.
    exporter.get("/metrics?collect[]=smart&collect[]=ipmi", {SCRAPE_TIMEOUT_HEADER: "0.6"})
    while time.monotonic() < deadline:
        running = len(proc.children(recursive=True))
        if running:
            return running
        time.sleep(0.02)
    return 0


def wait_for_no_strays(token: str, exporter_pid: int) -> list[str]:
    """Strays after the exporter exited, given a moment for the kernel to reap them."""
    deadline = time.monotonic() + 3.0
    while (found := strays(token, exporter_pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def strays(token: str, exporter_pid: int) -> list[str]:
    """Processes anywhere on the host that inherited this run's token (orphans, zombies)."""
    found = []
    for proc in psutil.process_iter(["pid", "status", "cmdline"]):
        if proc.pid == exporter_pid:
            continue
        with contextlib.suppress(psutil.Error):
            if token in " ".join(proc.info["cmdline"] or []) or token in proc.environ().get(
                "HWCACHE_LEAK_TOKEN", ""
            ):
                found.append(f"{proc.pid}:{proc.info['status']}:{proc.info['cmdline']}")
    return found


@pytest.mark.parametrize(
    "response_cache", [True, False], ids=["response-cache", "no-response-cache"]
)
def test_no_fd_thread_or_process_leaks(tmp_path: Path, response_cache: bool) -> None:
    token = f"hwcache-leak-{uuid.uuid4().hex}"
    env = {
        "HWCACHE_LEAK_TOKEN": token,
        "FAKE_HANG_MARKER": token,
        "FAKE_SMARTCTL_MODE": "hang",
        "FAKE_SMARTCTL_DEVICES": SMART_DEVICES,
        "FAKE_IPMITOOL_MODE": "hang",
    }
    args = [*ARGS, "--web.response-cache" if response_cache else "--no-web.response-cache"]
    with run_exporter(args, tmp_path, env=env) as exporter:
        proc = psutil.Process(exporter.proc.pid)
        asyncio.run(drive(exporter.base, WARMUP_SCRAPES, spread=0.5))
        baseline = settle(exporter, proc, lambda s: not s.children)
        before = json.loads(exporter.get("/cache/stats")[1])["collectors"]
        started = time.monotonic()
        with ChildSampler(proc).running() as sampler:
            results = asyncio.run(drive(exporter.base, SCRAPES, SPREAD, offset=WARMUP_SCRAPES))
        elapsed = time.monotonic() - started
        after = settle(
            exporter,
            proc,
            lambda s: (
                not s.children
                and s.fds <= baseline.fds + FD_SLACK
                and s.threads <= baseline.threads + THREAD_SLACK
            ),
        )
        stats = json.loads(exporter.get("/cache/stats")[1])["collectors"]
        leftovers = strays(token, proc.pid)
        in_flight_at_exit = leave_tools_running(exporter, proc)
    log = exporter.logs()
    after_exit = wait_for_no_strays(token, proc.pid)
    failed = {}
    for name in TIMING_OUT:
        counts = Counter(stats[name]["refreshes"])
        counts.subtract(before[name]["refreshes"])
        failed[name] = counts["timeout"] + counts["error"]
        assert counts["success"] == 0, (name, counts)

    print(
        f"\nleaks[{'response-cache' if response_cache else 'no-response-cache'}]: "
        f"{SCRAPES} scrapes in {elapsed:.1f}s {dict(sorted(results.items()))}; "
        f"fds {baseline.fds} -> {after.fds}, threads {baseline.threads} -> {after.threads}, "
        f"children {len(baseline.children)} -> {len(after.children)} "
        f"(peak {sampler.peak} during the run), strays {len(leftovers)}; "
        f"{in_flight_at_exit} tool processes in flight at SIGTERM, {len(after_exit)} left after exit; "
        f"failed refreshes during the run {failed}"
    )
    assert results["status_200"] == SCRAPES, results
    if response_cache:
        assert results["response_hit"] > 0 and results["response_miss"] > 0, results
    else:
        assert results["response_none"] == SCRAPES, results
    # The timing-out collectors really timed out, again and again, during the run.
    assert min(failed.values()) >= 2, failed
    assert sampler.peak > 0, "no tool process was ever seen running: the hang mode did not run"
    assert after.children == [], after.children
    assert leftovers == [], leftovers
    assert after.fds <= baseline.fds + FD_SLACK, (baseline, after)
    assert after.threads <= baseline.threads + THREAD_SLACK, (baseline, after)
    assert exporter.proc.returncode == 0, log
    assert in_flight_at_exit > 0
    assert after_exit == [], after_exit
    assert "Traceback" not in log
