"""Benchmark: hwcache (response-cache hit, metric-cache hit) vs a fixed-bytes baseline and peers.

Everything runs on loopback, bounded in time. Ratios are against the baseline measured in the
same run, so the numbers compare on any machine. Usage: ``make bench`` or
``python bench/bench.py --duration 5``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_change import collect_once, data_change_scrape, median_time, render_costs  # noqa: E402
from scrape_sim import PROMETHEUS_HEADERS  # noqa: E402
from scrape_sim import run as simulate_scrapes  # noqa: E402

from collectors.base import CollectorContext  # noqa: E402
from collectors.synthetic import SyntheticCollector  # noqa: E402
from tests.support import answers, free_port, running  # noqa: E402

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Row:
    """One load-test result."""

    target: str
    samples: int
    encoding: str
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_s_per_1k: float
    errors: int
    # Medians over rounds of (baseline or layered CPU per scrape ÷ this target's) in the same
    # round: pairs measured a few seconds apart, so drift of a shared machine cancels out.
    cpu_ratio: float | None = None
    cpu_ratio_layered: float | None = None


@contextmanager
def server(argv: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server subprocess and wait until /metrics answers; always stop it."""
    url = f"http://127.0.0.1:{port}/metrics"
    # Logs go to a file: an unread pipe fills up and blocks a chatty server (node_exporter).
    with (
        tempfile.TemporaryDirectory() as tmp,
        running(argv, Path(tmp) / "server.log", lambda: answers(url, 5), 60, argv[0]) as proc,
    ):
        yield proc


def hwcache_argv(port: int, samples: int, response_cache: bool) -> list[str]:
    return [
        sys.executable, "-m", "exporter", f"--web.listen-address=127.0.0.1:{port}",
        "--collector.disable-defaults", "--collector.synthetic",
        f"--collector.synthetic.samples={samples}", "--collector.synthetic.interval=24h",
        "--web.max-requests=0", "--log.level=warn", "--web.invalidate-min-interval=0s",
        "--web.response-cache" if response_cache else "--no-web.response-cache",
    ]  # fmt: skip


def parse_latency(text: str, pct: str) -> float:
    match = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    return float(match.group(1)) * UNITS[match.group(2)] if match else float("nan")


def load(port: int, encoding: str, duration: float, connections: int) -> tuple[str, int]:
    """Run wrk against /metrics and return its output and request count."""
    headers = ["-H", "Accept-Encoding: gzip"] if encoding == "gzip" else []
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", *headers,
         f"http://127.0.0.1:{port}/metrics"],
        capture_output=True, text=True, check=True, timeout=duration + 60,
    ).stdout  # fmt: skip
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return out, requests


def measure(
    target: str, pid: int, port: int, samples: int, enc: str, args: argparse.Namespace
) -> Row:
    proc = psutil.Process(pid)
    load(port, enc, 1, args.connections)  # warm up
    before = sum(proc.cpu_times()[:2])
    out, requests = load(port, enc, args.duration, args.connections)
    cpu = sum(proc.cpu_times()[:2]) - before
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    row = Row(
        target, samples, enc,
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=parse_latency(out, "50"), p99_ms=parse_latency(out, "99"),
        cpu_s_per_1k=cpu / max(requests, 1) * 1000,
        errors=int(errors.group(1)) if errors else 0,
    )  # fmt: skip
    if socket_errors:
        print(f"  {target}: socket errors {socket_errors.group(1)}", file=sys.stderr)
    print(f"  {target:<24} {samples:>6} {enc:<8} {row.rps:>9.0f} req/s  p50 {row.p50_ms:.2f} ms")
    return row


def median_row(runs: list[Row]) -> Row:
    """The run with the median req/s (its latencies and CPU come with it)."""
    return sorted(runs, key=lambda r: r.rps)[len(runs) // 2]


def fetch(port: int, gzip_ok: bool) -> bytes:
    headers = {"Accept-Encoding": "gzip"} if gzip_ok else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return bytes(resp.read())


LAYERED = "fixed bytes behind the exporter's HTTP layers"


def run_peers(samples: int, args: argparse.Namespace, tmp: Path) -> list[Row]:
    rows: list[Row] = []
    ports = {name: free_port() for name in ("rc", "mc", "client", "baseline", "layered")}
    py = sys.executable
    with (
        server(hwcache_argv(ports["rc"], samples, True), ports["rc"]) as rc,
        server(hwcache_argv(ports["mc"], samples, False), ports["mc"]) as mc,
        server([py, "bench/servers.py", "client", f"--port={ports['client']}",
                f"--samples={samples}"], ports["client"]) as client,
    ):  # fmt: skip
        body = fetch(ports["rc"], False)
        (tmp / "body").write_bytes(body)
        (tmp / "body.gz").write_bytes(gzip.compress(body, 6))
        bodies = [f"--body={tmp / 'body'}", f"--gzip-body={tmp / 'body.gz'}"]
        baseline_argv = [py, "bench/servers.py", "baseline", f"--port={ports['baseline']}"]
        layered_argv = [py, "bench/servers.py", "layered", f"--port={ports['layered']}"]
        with (
            server([*baseline_argv, *bodies], ports["baseline"]) as base,
            server([*layered_argv, *bodies], ports["layered"]) as layered,
        ):
            targets = (
                ("baseline (fixed bytes)", base, ports["baseline"]),
                (LAYERED, layered, ports["layered"]),
                ("hwcache response-cache hit", rc, ports["rc"]),
                ("hwcache metric-cache hit", mc, ports["mc"]),
                ("prometheus_client uncached", client, ports["client"]),
            )
            for enc in ("identity", "gzip"):
                # Interleaved rounds, median per target: this VM's speed drifts between runs.
                rounds: dict[str, list[Row]] = {name: [] for name, _, _ in targets}
                for _ in range(args.rounds):
                    for target, proc, port in targets:
                        rounds[target].append(measure(target, proc.pid, port, samples, enc, args))
                for runs in rounds.values():
                    row = median_row(runs)
                    row.cpu_ratio = paired_ratio(rounds[targets[0][0]], runs)
                    row.cpu_ratio_layered = paired_ratio(rounds[LAYERED], runs)
                    rows.append(row)
    return rows


def paired_ratio(reference: list[Row], runs: list[Row]) -> float:
    """Median over rounds of reference CPU per scrape ÷ this target's, in the same round."""
    ratios = sorted(r.cpu_s_per_1k / t.cpu_s_per_1k for r, t in zip(reference, runs, strict=True))
    return ratios[len(ratios) // 2]


def run_node_exporter(args: argparse.Namespace) -> list[Row]:
    binary = shutil.which("prometheus-node-exporter")
    if binary is None:
        print("prometheus-node-exporter not installed; skipped", file=sys.stderr)
        return []
    port = free_port()
    argv = [binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    with server(argv, port) as proc:
        samples = sum(1 for line in fetch(port, False).splitlines() if not line.startswith(b"#"))
        return [measure("node_exporter 1.5 (Debian)", proc.pid, port, samples, enc, args)
                for enc in ("identity", "gzip")]  # fmt: skip


def scaling(sizes: list[int], args: argparse.Namespace) -> list[dict[str, float]]:
    """Costs of a data change, hit latency and RSS at each size."""
    table = []
    text_headers = {"Accept": "text/plain"}
    for samples in sizes:
        ctx = CollectorContext(options={"samples": str(samples), "delay": "0"})
        collector = SyntheticCollector(ctx)
        collect_s = median_time(partial(collect_once, collector))
        families = list(asyncio.run(collector.collect()))
        port = free_port()
        with server(hwcache_argv(port, samples, True), port) as proc:
            rss_idle = psutil.Process(proc.pid).memory_info().rss
            change_text = data_change_scrape(port, text_headers)
            change_om_gzip = data_change_scrape(port, PROMETHEUS_HEADERS)
            out, _ = load(port, "identity", min(args.duration, 3), 1)
            rss_loaded = psutil.Process(proc.pid).memory_info().rss
        table.append({
            "samples": samples, "collect_ms": collect_s * 1000,
            **render_costs(families),
            "change_text_ms": change_text * 1000, "change_om_gzip_ms": change_om_gzip * 1000,
            "hit_p50_ms": parse_latency(out, "50"), "hit_p99_ms": parse_latency(out, "99"),
            "rss_mib_idle": rss_idle / 2**20, "rss_mib_after_load": rss_loaded / 2**20,
        })  # fmt: skip
        print(f"  scaling {samples}: {table[-1]}")
    return table


def markdown(rows: list[Row], scale: list[dict[str, float]], sim: list[dict[str, object]]) -> str:
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.platform()}, "
        f"{psutil.cpu_count()} vCPU, Python {platform.python_version()}; wrk -t1, "
        "loopback. Ratio = req/s ÷ baseline req/s (median runs); CPU ratio = baseline CPU per "
        "scrape ÷ this target's, taken in each interleaved round and the median over rounds "
        "given (same samples, same encoding; steadier when the machine is shared); CPU ratio to "
        "layered: the same against fixed bytes served through the exporter's own connection "
        "guard, request tracking and request limit (bench/servers.py layered).",
        "",
        "| target | samples | encoding | req/s | ratio | CPU ratio | CPU ratio to layered "
        "| p50 ms | p99 ms | CPU s / 1k scrapes |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = {(r.samples, r.encoding): r for r in rows if r.target.startswith("baseline")}
    for r in rows:
        b = base.get((r.samples, r.encoding))
        ratio = "-" if b is None else f"{r.rps / b.rps:.2f}"
        cpu = "-" if r.cpu_ratio is None else f"{r.cpu_ratio:.2f}"
        to_layered = "-" if r.cpu_ratio_layered is None else f"{r.cpu_ratio_layered:.2f}"
        lines.append(
            f"| {r.target} | {r.samples} | {r.encoding} | {r.rps:.0f} | {ratio} | {cpu} | "
            f"{to_layered} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.cpu_s_per_1k:.3f} |"
        )
    lines += ["", "Data change (render ms: encoding alone, in-process; change → scrape ms: from the "
              "change to its first scrape answered by the real server, including the "
              "synthetic collector's own collect ms):", "",
              "| samples | collect ms | render text ms | render OpenMetrics ms | gzip ms "
              "| change → text scrape ms | change → OpenMetrics+gzip scrape ms | hit p50 ms "
              "| hit p99 ms | RSS MiB idle | RSS MiB after load |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for s in scale:
        lines.append(
            f"| {s['samples']:.0f} | {s['collect_ms']:.0f} | {s['render_text_ms']:.0f} | "
            f"{s['render_om_ms']:.0f} | {s['gzip_om_ms']:.0f} | {s['change_text_ms']:.0f} | "
            f"{s['change_om_gzip_ms']:.0f} | {s['hit_p50_ms']:.2f} | {s['hit_p99_ms']:.2f} | "
            f"{s['rss_mib_idle']:.0f} | {s['rss_mib_after_load']:.0f} |"
        )
    lines += [
        "",
        "Simulated Prometheus, one scrape every 15 s (fake clock, real app):",
        "",
        "| collectors | hours | scrapes | response-cache hits |",
        "|---|---:|---:|---:|",
    ]
    for row in sim:
        lines.append(
            f"| {row['profile']} | {row['hours']:g} | {row['scrapes']} | {row['hit_ratio']:.2%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per load run")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved runs per target")
    parser.add_argument("--samples", default="1000,10000")
    parser.add_argument("--scaling", default="1000,10000,100000")
    parser.add_argument("--sim-hours", type=float, default=24.0, help="simulated 15 s scrapes")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: run `make bench` (installs it) or apt-get install wrk")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for samples in (int(s) for s in args.samples.split(",")):
            rows += run_peers(samples, args, Path(tmp))
    rows += run_node_exporter(args)
    scale = scaling([int(s) for s in args.scaling.split(",")], args)
    sim = simulate_scrapes(args.sim_hours)
    table = markdown(rows, scale, sim)
    print("\n" + table)
    args.output.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.output / f"bench-{stamp}.md").write_text(table + "\n")
    raw = {"rows": [asdict(r) for r in rows], "scaling": scale, "simulated": sim}
    (args.output / f"bench-{stamp}.json").write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
