"""The landing page rendered by a real headless Chromium at desktop and narrow widths."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import signal
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from collectors.registry import load_all
from collectors.toolkit.runner import CommandRunner
from exporter.app import create_app
from exporter.keys import READY
from exporter.settings import CollectorSettings, Settings
from tests.support import PROCFS, REPO, SYSFS, fake_path

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"
HEIGHT = 720
OK = ("disks", "dmi", "hwmon")
FAILING = ("gpu", "synthetic")  # gpu: permission denied, a long message
NOT_APPLICABLE = "ipmi"  # no /dev/ipmi0: a long reason
SKIPPED = (("smart", "smartctl is not installed (not found on PATH)"),)
RED, GREY, CLEAR = "rgb(198, 40, 40)", "rgb(95, 99, 104)", "rgba(0, 0, 0, 0)"
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]

# Per row: each cell's classes, text, colours (of its badge if it has one), rendered line
# count, whether its content overflows it and whether its text is on top where it is drawn
# (not hidden under a sticky column or outside the table's scroll region).
LAYOUT_JS = """(scrollRight) => {
  const table = document.getElementById("collectors");
  const wrap = table.parentElement;
  if (scrollRight) wrap.scrollLeft = wrap.scrollWidth;
  const texts = (el) => {
    const rects = [], walk = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    while (walk.nextNode()) {
      const range = document.createRange();
      range.selectNodeContents(walk.currentNode);
      rects.push(...range.getClientRects());
    }
    return rects.filter((r) => r.width > 0);
  };
  const cell = (el) => {
    const style = getComputedStyle(el);
    const inner = el.firstElementChild ? getComputedStyle(el.firstElementChild) : style;
    const rects = texts(el);
    const onTop = rects.length > 0 && rects.every((r) =>
      el.contains(document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2)));
    return {cls: el.className, text: el.textContent.trim(), color: inner.color,
            background: inner.backgroundColor, overflows: el.scrollWidth > el.clientWidth,
            lines: new Set(rects.map((r) => Math.round(r.top))).size, visible: onTop,
            // A sticky cell must hide what scrolls beneath it, or texts would overlap.
            seeThrough: style.position === "sticky" && !style.backgroundColor.startsWith("rgb(")};
  };
  const rows = {};
  for (const tr of table.tBodies[0].rows) rows[tr.id] = [...tr.cells].map(cell);
  return {rows, headers: [...table.tHead.rows[0].cells].map(cell),
          pageWidth: document.documentElement.scrollWidth, window: innerWidth,
          wrapOverflow: getComputedStyle(wrap).overflowX, scrolled: wrap.scrollLeft,
          wrapRight: wrap.getBoundingClientRect().right,
          metricsHref: document.getElementById("metrics-link").getAttribute("href")};
}"""


class Tab:
    """One Chromium page driven over the DevTools protocol (commands answered in order)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[str] = []

    async def _receive(self) -> dict[str, Any]:
        message: dict[str, Any] = await self.ws.receive_json()
        if "method" in message:
            self.events.append(message["method"])
        return message

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command and return its result (events seen meanwhile are recorded)."""
        ident = next(self.ids)
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        while (message := await self._receive()).get("id") != ident:
            pass
        assert "error" not in message, (method, message["error"])
        result: dict[str, Any] = message["result"]
        return result

    async def open(self, url: str, width: int) -> None:
        """Load ``url`` in a ``width`` x HEIGHT window."""
        async with asyncio.timeout(30):
            await self.call("Emulation.setDeviceMetricsOverride", width=width, height=HEIGHT,
                            deviceScaleFactor=1, mobile=False)  # fmt: skip
            self.events.clear()
            await self.call("Page.navigate", url=url)
            while "Page.loadEventFired" not in self.events:
                await self._receive()

    async def screenshot(self) -> bytes:
        """A PNG of the window."""
        shot = await self.call("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])

    async def layout(self, scroll_right: bool = False) -> dict[str, Any]:
        """What LAYOUT_JS reports, after scrolling the table fully right if asked."""
        answer = await self.call(
            "Runtime.evaluate",
            expression=f"({LAYOUT_JS})({json.dumps(scroll_right)})",
            returnByValue=True,
        )
        assert "exceptionDetails" not in answer, answer
        value: dict[str, Any] = answer["result"]["value"]
        return value


@contextlib.asynccontextmanager
async def chromium(tmp_path: Path) -> AsyncIterator[Tab]:
    """A headless Chromium with one blank tab; the whole process group is killed after."""
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError("chromium not installed: install the Debian package (make debian-deps)")
    proc = await asyncio.create_subprocess_exec(
        *(CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"),
        *("--no-first-run", "--disable-background-networking", "--disable-component-update"),
        *("--disable-sync", "--remote-debugging-port=0"),
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stderr is not None
    log: list[bytes] = []
    drain: asyncio.Task[None] | None = None
    try:
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(60):
                while not (found := re.search(rb"listening on ws://([^/]+)/", b"".join(log))):
                    line = await proc.stderr.readline()
                    assert line, b"".join(log).decode(errors="replace")[-2000:]
                    log.append(line)
                # Keep reading so Chromium never blocks on a full stderr pipe.
                drain = asyncio.create_task(_drain(proc.stderr, log))
                session = await stack.enter_async_context(aiohttp.ClientSession())
                async with session.get(f"http://{found.group(1).decode()}/json/list") as response:
                    page = next(t for t in await response.json() if t["type"] == "page")
                ws = await stack.enter_async_context(
                    session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
                )
                tab = Tab(ws)
                await tab.call("Page.enable")
            yield tab
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if drain is not None:
            await drain


async def _drain(stream: asyncio.StreamReader, log: list[bytes]) -> None:
    while line := await stream.readline():
        log.append(line)


def exporter_app() -> web.Application:
    """The real app and collectors on the fixture roots, with one collector skipped."""
    registry, overrides = load_all(), {"synthetic": {"fail": "true"}}
    collectors = tuple(
        CollectorSettings(
            name,
            3600.0,
            20.0,
            {o.name: o.default for o in registry[name].options} | overrides.get(name, {}),
        )
        for name in (*OK, *FAILING, NOT_APPLICABLE)
    )
    settings = Settings(collectors, procfs=PROCFS, sysfs=SYSFS, skipped=SKIPPED)
    env = {"PATH": fake_path(), "FAKE_NVIDIA_SMI_MODE": "denied", "FAKE_IPMITOOL_MODE": "nodevice"}
    return create_app(settings, runner=CommandRunner(env=env))


async def test_landing_page_in_chromium(aiohttp_server: ServerFactory, tmp_path: Path) -> None:
    """Failures stand out, "not applicable" and skipped are grey notes, at 1280 and 800 px."""
    app = exporter_app()
    server = await aiohttp_server(app)
    async with asyncio.timeout(60):
        await app[READY].wait()
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/cache/stats")) as response:
            stats = (await response.json())["collectors"]
        async with session.get(server.make_url("/metrics")) as response:
            body = await response.text()
    assert {n for n, s in stats.items() if s["status"] == "ok"} == set(OK)
    assert {n for n, s in stats.items() if s["status"] == "error"} == set(FAILING)
    assert stats[NOT_APPLICABLE]["status"] == "not_applicable"
    assert 'hwcache_collector_success{collector="synthetic"} 0.0' in body

    ARTIFACTS.mkdir(exist_ok=True)
    error_bg = bytes(int(c) for c in re.findall(r"\d+", RED))
    async with chromium(tmp_path) as tab:
        for width in (1280, 800):
            await tab.open(str(server.make_url("/")), width)
            png = await tab.screenshot()
            # Saved before any check, for a human to look at (tests/artifacts is ignored by git).
            await asyncio.to_thread((ARTIFACTS / f"landing-{width}.png").write_bytes, png)
            page = await tab.layout()
            scrolled = await tab.layout(scroll_right=True)
            if scrolled["scrolled"]:
                shot = ARTIFACTS / f"landing-{width}-scrolled.png"
                await asyncio.to_thread(shot.write_bytes, await tab.screenshot())
            check_layout(page, stats, width)
            check_reachable(page, scrolled, width)
            # Failures are visibly marked: the badge colour is on screen, over an area.
            _, _, pixels = png_pixels(png)
            assert count_color(pixels, error_bg) > 500, width
    assert page["metricsHref"] == "/metrics"


def check_layout(page: dict[str, Any], stats: dict[str, Any], width: int) -> None:
    """The table's content, colours and line breaks at one window width."""
    rows = {key.removeprefix("collector-"): cells for key, cells in page["rows"].items()}
    assert list(rows) == [*stats, *(name for name, _ in SKIPPED)], width
    for name, cells in rows.items():
        where = f"{name} at {width}px"
        status, message = cells[1], cells[-1]
        expected = stats[name]["status"] if name in stats else "skipped"
        assert status["cls"] == f"status {expected}", where
        assert status["text"] == expected.replace("_", " "), where
        if expected in ("not_applicable", "skipped"):
            reason = stats[name]["last_error"] if name in stats else dict(SKIPPED)[name]
            assert (message["cls"], message["text"]) == ("msg note", reason), where
            assert status["color"] == message["color"] == GREY, where
            assert status["background"] == CLEAR, where
        elif expected == "error":
            assert (message["cls"], message["text"]) == ("msg err", stats[name]["last_error"])
            assert status["background"] == message["color"] == RED, where
        else:
            assert message["text"] == "", where
        # Short values stay on one line; nothing spills out of its cell.
        for cell in [*cells[:-1], *page["headers"]]:
            assert cell["lines"] == (1 if cell["text"] else 0), (where, cell)
        assert not any(cell["overflows"] or cell["seeThrough"] for cell in cells), where
    long_messages = [rows[name][-1] for name in ("gpu", NOT_APPLICABLE)]
    assert all(m["lines"] > 1 for m in long_messages), width
    # Only the table's own region may scroll sideways, never the whole page.
    assert page["pageWidth"] <= page["window"] == width
    assert page["wrapOverflow"] == "auto" and page["wrapRight"] <= width


def check_reachable(page: dict[str, Any], scrolled: dict[str, Any], width: int) -> None:
    """Name, status and message are in view at once; every other value by scrolling."""
    for key, cells in page["rows"].items():
        where = f"{key} at {width}px"
        assert [c["visible"] for c in (cells[0], cells[1])] == [True, True], where
        assert cells[-1]["visible"] or not cells[-1]["text"], where
        after = scrolled["rows"][key]
        for i, cell in enumerate(cells):
            assert cell["visible"] or after[i]["visible"] or not cell["text"], (where, i)
    if width >= 1280:
        assert scrolled["scrolled"] == 0, "nothing to scroll at 1280 px"


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) into pixel rows."""
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


async def test_png_decoder_counts_colours(tmp_path: Path) -> None:
    """The PNG decoder sees a known colour in a Chromium screenshot of a plain page."""
    color = "1e88e5"
    page = tmp_path / "page.html"
    page.write_text(
        f'<body style="margin:0"><div style="width:40px;height:25px;background:#{color}">'
    )
    async with chromium(tmp_path) as tab:
        await tab.open(page.as_uri(), 1280)
        png = await tab.screenshot()
    width, height, rows = png_pixels(png)
    assert (width, height) == (1280, HEIGHT)
    assert count_color(rows, bytes.fromhex(color)) == 40 * 25
    assert count_color(rows, bytes.fromhex("ffffff")) == width * height - 40 * 25
