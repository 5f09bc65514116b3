"""Real Prometheus ecosystem helpers: a Prometheus server, promtool and a recording proxy."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from collectors.registry import load_all
from tests.support import FAKES, answers, free_port, read_log, running

# What Prometheus sends when it must use the classic text format (scrape_protocols).
TEXT_ACCEPT = "text/plain;version=0.0.4"
# Headers a scraper sends that the proxy passes on to the exporter unchanged.
FORWARDED = ("Accept-Encoding", "User-Agent", "X-Prometheus-Scrape-Timeout-Seconds")


def binary(name: str) -> str:
    """Path of a Prometheus tool; a clear error (never a skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} not found on PATH: install the Debian package (make debian-deps)"
        )
    return path


@dataclass(frozen=True)
class ScrapeJob:
    """One scrape_config: a job name, one loopback target and extra settings."""

    name: str
    target: str
    extra: dict[str, Any] = field(default_factory=dict)


def prometheus_config(
    jobs: Sequence[ScrapeJob],
    interval: str = "1s",
    timeout: str = "1s",
    rule_files: Sequence[Path] = (),
) -> str:
    """A prometheus.yml scraping ``jobs`` and evaluating ``rule_files`` every ``interval``."""
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": timeout,
            "evaluation_interval": interval,
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": j.name, **j.extra, "static_configs": [{"targets": [j.target]}]}
            for j in jobs
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool; returns the completed process (never raises on a non-zero exit)."""
    return subprocess.run(
        [binary("promtool"), *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def supports_scrape_protocols(tmp_path: Path) -> bool:
    """Whether this Prometheus knows ``scrape_protocols`` (added in 2.49; Debian 12 has 2.42)."""
    job = ScrapeJob("probe", "127.0.0.1:9", {"scrape_protocols": ["PrometheusText0.0.4"]})
    config = tmp_path / "scrape-protocols-probe.yml"
    config.write_text(prometheus_config([job]))
    return promtool("check", "config", str(config)).returncode == 0


class Prometheus:
    """Client for a running Prometheus server's HTTP API."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.base = f"http://127.0.0.1:{port}"
        self.log = log

    def api(self, path: str, **params: str) -> Any:
        """GET an API path and return its ``data`` (raises on an API error)."""
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as err:
            raise AssertionError(f"{path} {params}: HTTP {err.code}: {err.read()!r}") from None
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant vector query: ``[{"metric": {...}, "value": [ts, "v"]}, ...]``."""
        data = self.api("/api/v1/query", query=expr)
        if data["resultType"] != "vector":
            raise AssertionError(f"{expr}: expected a vector, got {data['resultType']}")
        return list(data["result"])

    def value(self, expr: str) -> float:
        """The single value of a query that must return exactly one series."""
        result = self.query(expr)
        if len(result) != 1:
            raise AssertionError(f"{expr}: expected one series, got {result}")
        return float(result[0]["value"][1])

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts: ``[{"labels", "annotations", "state", ...}, ...]``."""
        return list(self.api("/api/v1/alerts")["alerts"])

    def wait_for(self, expr: str, ok: Callable[[float], bool], timeout: float) -> float:
        """Poll a single-series query until ``ok(value)``; fail with the last value seen."""
        deadline = time.monotonic() + timeout
        last: object = "no series"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}:\n{self.logs()}")
            result = self.query(expr)
            if len(result) == 1:
                last = float(result[0]["value"][1])
                if ok(float(result[0]["value"][1])):
                    return float(result[0]["value"][1])
            time.sleep(0.25)
        raise AssertionError(
            f"{expr}: condition not met in {timeout}s (last: {last})\n{self.logs()}"
        )

    def logs(self) -> str:
        """Prometheus' own log output so far."""
        return read_log(self.log)


@contextlib.contextmanager
def run_prometheus(
    jobs: Sequence[ScrapeJob],
    tmp_path: Path,
    rule_files: Sequence[Path] = (),
    ready_timeout: float = 30.0,
    config: dict[str, Any] | None = None,
) -> Iterator[Prometheus]:
    """Start a real Prometheus on loopback with a fresh TSDB (``config`` replaces the jobs)."""
    config_file = tmp_path / "prometheus.yml"
    if config is None:
        config_file.write_text(prometheus_config(jobs, rule_files=rule_files))
    else:
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    log = tmp_path / "prometheus.log"
    argv = [
        binary("prometheus"),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    ready = f"http://127.0.0.1:{port}/-/ready"
    with running(
        argv, log, lambda: answers(ready), ready_timeout, "prometheus", cwd=tmp_path
    ) as proc:
        yield Prometheus(proc, port, log)


@dataclass(frozen=True)
class Exchange:
    """One request seen by the proxy: what the scraper asked for, what the exporter answered."""

    accept_in: str
    accept_out: str
    status: int
    content_type: str


class RecordingProxy:
    """A loopback HTTP proxy in front of the exporter recording content negotiation.

    ``accept`` replaces the scraper's Accept header (Prometheus < 2.49 cannot be told to
    ask for the text format); the response bytes and headers pass through unchanged.
    """

    def __init__(self, upstream: str, accept: str | None = None) -> None:
        self.upstream = upstream
        self.accept = accept
        self.exchanges: list[Exchange] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                accept_in = self.headers.get("Accept", "")
                accept_out = proxy.accept if proxy.accept is not None else accept_in
                headers = {h: v for h in FORWARDED if (v := self.headers.get(h)) is not None}
                request = urllib.request.Request(
                    f"http://{proxy.upstream}{self.path}", headers={**headers, "Accept": accept_out}
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, body, reply = response.status, response.read(), response.headers
                except urllib.error.HTTPError as err:
                    status, body, reply = err.code, err.read(), err.headers
                content_type = reply.get("Content-Type", "")
                proxy.exchanges.append(Exchange(accept_in, accept_out, status, content_type))
                self.send_response(status)
                for name in ("Content-Type", "Content-Encoding"):
                    if reply.get(name):
                        self.send_header(name, reply[name])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test asserts on ``exchanges`` instead."""

        return Handler

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def fakeable_collector_args() -> tuple[list[str], list[str]]:
    """Flags enabling every registered collector runnable here (no tool, or a fake tool).

    Collectors whose tool has no fake in tests/fakes are disabled so a real tool on the
    host can never leak into a test. Returns (flags, enabled collector names).
    """
    flags, names = [], []
    for name, spec in load_all().items():
        if spec.tool is None or (FAKES / spec.tool).is_file():
            flags.append(f"--collector.{name}")
            names.append(name)
        else:
            flags.append(f"--no-collector.{name}")
    return flags, names
