"""The landing page rendered by a real headless Chromium: every collector, failures visible."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import urllib.parse
import urllib.request
import zlib
from html.parser import HTMLParser
from pathlib import Path

from tests.support import PROCFS, REPO, SYSFS, run_exporter

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"
COLLECTORS = ("cpu", "memory", "disks", "synthetic")
FAILING = "synthetic"
WINDOW = (1280, 720)


class PageParser(HTMLParser):
    """Collects the collector table rows (cells with classes and text) and links by id."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[tuple[set[str], str]]] = {}
        self.links: dict[str, str] = {}
        self.style = ""
        self._row: str | None = None
        self._cell: tuple[set[str], list[str]] | None = None
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "tr" and attr.get("id", "").startswith("collector-"):
            self._row = attr["id"].removeprefix("collector-")
            self.rows[self._row] = []
        elif tag == "td" and self._row is not None:
            self._cell = (set(attr.get("class", "").split()), [])
        elif tag == "a" and "id" in attr:
            self.links[attr["id"]] = attr.get("href", "")
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self.rows[self._row].append((self._cell[0], "".join(self._cell[1]).strip()))
            self._cell = None
        elif tag == "tr":
            self._row = None
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[1].append(data)
        if self._in_style:
            self.style += data


def chromium(url: str, tmp_path: Path, screenshot: Path) -> str:
    """Render ``url`` headless; return the DOM and write a PNG screenshot."""
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError("chromium not installed: install the Debian package (make debian-deps)")
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--dump-dom",
        f"--screenshot={screenshot}",
        url,
    ]
    # Own process group: on a timeout the renderer and helpers die with the browser.
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) into pixel rows."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
    bpp = 3 if color == 2 else 4
    raw, stride, rows = zlib.decompress(idat), width * bpp, []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(b for x in range(width) for b in line[x * bpp : x * bpp + 3]))
        prev = line
    return width, height, rows


def count_color(rows: list[bytes], rgb: bytes) -> int:
    """Pixels of exactly ``rgb``."""
    return sum(sum(1 for x in range(0, len(row), 3) if row[x : x + 3] == rgb) for row in rows)


def test_landing_page_in_chromium(tmp_path: Path) -> None:
    """Every enabled collector has a row with its status; the failing one stands out."""
    args = [
        f"--path.sysfs={SYSFS}",
        f"--path.procfs={PROCFS}",
        "--collector.disable-defaults",
        *(f"--collector.{name}" for name in COLLECTORS),
        "--collector.synthetic.samples=10",
        "--collector.synthetic.fail=true",
    ]
    screenshot = tmp_path / "landing.png"
    try:
        with run_exporter(args, tmp_path) as exporter:
            dom = chromium(exporter.base + "/", tmp_path, screenshot)
            stats = json.loads(exporter.get("/cache/stats")[1])["collectors"]
            page = PageParser()
            page.feed(dom)

            assert set(stats) == set(COLLECTORS)
            assert set(page.rows) == set(COLLECTORS)
            for name, cells in page.rows.items():
                (status_classes, status), *_ = [c for c in cells if "status" in c[0]]
                assert status == stats[name]["status"], name
                assert status_classes == {"status", status}, name
                error_cell = [text for classes, text in cells if "err" in classes]
                assert error_cell == [stats[name]["last_error"] or ""], name
            errors = {n for n, s in stats.items() if s["status"] == "error"}
            assert errors == {FAILING}
            assert "synthetic failure requested" in stats[FAILING]["last_error"]

            href = page.links["metrics-link"]
            url = urllib.parse.urljoin(exporter.base + "/", href)
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200
                body = response.read().decode()
            assert f'hwcache_collector_success{{collector="{FAILING}"}} 0.0' in body
            assert "hw_cpu_info{" in body

        # "Visibly marked": the error style's background colour is on screen, over an area.
        match = re.search(r"\.error\{[^}]*background:#([0-9a-fA-F]{6})", page.style)
        assert match, page.style
        width, height, rows = png_pixels(screenshot)
        assert (width, height) == WINDOW
        assert count_color(rows, bytes.fromhex(match.group(1))) > 500
    except BaseException:
        if screenshot.exists():
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(screenshot, ARTIFACTS / "landing.png")
        raise


def test_png_decoder_counts_colours(tmp_path: Path) -> None:
    """The PNG decoder sees a known colour in a Chromium screenshot of a plain page."""
    color = "1e88e5"
    page = tmp_path / "page.html"
    page.write_text(
        f'<body style="margin:0"><div style="width:40px;height:25px;background:#{color}">'
    )
    shot = tmp_path / "plain.png"
    chromium(page.as_uri(), tmp_path, shot)
    _, _, rows = png_pixels(shot)
    assert count_color(rows, bytes.fromhex(color)) == 40 * 25
    assert count_color(rows, bytes.fromhex("ffffff")) == WINDOW[0] * WINDOW[1] - 40 * 25
