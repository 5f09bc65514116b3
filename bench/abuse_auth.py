"""bench/abuse.py phases against the web config: a TLS half-handshake flood, a password flood."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import bcrypt
import psutil

from tests.websec import client_context, make_pki

MiB = 1024 * 1024
# A TLS handshake record header and the first bytes of a ClientHello, then nothing.
CLIENT_HELLO_START = bytes.fromhex("16030100c8010000c40303")
BCRYPT_COST = 10  # what docs/security.md suggests
FLOOD_LOOPS = 60


@dataclass
class Usage:
    """Open fds and RSS of the exporter: before the attack, at its peak, after it."""

    proc: psutil.Process
    fds: list[int] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)

    def sample(self) -> None:
        """Take one sample (the first is "before", the last "after")."""
        with contextlib.suppress(psutil.Error):
            self.fds.append(self.proc.num_fds())
            self.rss.append(self.proc.memory_info().rss)

    def line(self) -> str:
        """``fds 9 -> peak 566 -> 9, RSS 40 -> peak 45 -> 44 MiB``."""
        fds, rss = self.fds, [r / MiB for r in self.rss]
        return (
            f"  exporter fds {fds[0]} -> peak {max(fds)} -> after {fds[-1]}; "
            f"RSS {rss[0]:.0f} -> peak {max(rss):.0f} -> after {rss[-1]:.0f} MiB"
        )


def tls_config(tmp: Path) -> tuple[Path, ssl.SSLContext]:
    """A web config serving TLS with a throwaway certificate, and a client context for it."""
    pki = make_pki(tmp / "pki")
    config = tmp / "tls.yml"
    config.write_text(
        f"tls_server_config:\n  cert_file: {pki.server}\n  key_file: {pki.server_key}\n"
    )
    return config, client_context(pki)


def users_config(tmp: Path, count: int) -> tuple[Path, dict[str, str]]:
    """A web config with ``prometheus`` and ``count`` more users (never used before), cost 10."""
    users = {"prometheus": "scrape", **{f"fresh{i}": f"pw{i}" for i in range(count)}}
    lines = ["basic_auth_users:"]
    for user, password in users.items():
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()
        lines.append(f"  {user}: {hashed}")
    config = tmp / "users.yml"
    config.write_text("\n".join(lines) + "\n")
    return config, users


async def half_handshake(port: int, stop_at: float, counts: Counter[str], n: int) -> None:
    """Hold one TCP connection that never completes its TLS handshake; reopen when closed."""
    loop = asyncio.get_running_loop()
    while time.monotonic() < stop_at:
        sock = socket.socket()
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 5)
        except (OSError, TimeoutError):
            sock.close()
            counts["connect failures"] += 1
            await asyncio.sleep(1.0)
            continue
        counts["opened"] += 1
        if n % 2:
            with contextlib.suppress(OSError):
                await loop.sock_sendall(sock, CLIENT_HELLO_START)
        try:
            left = max(stop_at - time.monotonic(), 0.01)
            if await asyncio.wait_for(loop.sock_recv(sock, 1), left) == b"":
                counts["closed by the server"] += 1
        except (OSError, TimeoutError):
            pass
        sock.close()
        await asyncio.sleep(1.0)


async def scrape(
    session: aiohttp.ClientSession, url: str, auth: aiohttp.BasicAuth | None = None
) -> str:
    """One GET; the status as text, or the error's name."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=10), auth=auth) as resp:
            await resp.read()
            return str(resp.status)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return type(exc).__name__


async def tls_phase(
    usage: Usage, port: int, context: ssl.SSLContext, count: int, duration: float
) -> list[str]:
    """``count`` connections stuck before or in their TLS handshake; one HTTPS scrape a second."""
    counts: Counter[str] = Counter()
    scrapes: Counter[str] = Counter()
    url = f"https://127.0.0.1:{port}/metrics"
    usage.sample()
    stop_at = time.monotonic() + duration
    attackers = [
        asyncio.create_task(half_handshake(port, stop_at, counts, n)) for n in range(count)
    ]
    # A new connection (and handshake) per scrape, as a scraper whose keep-alive was closed.
    connector = aiohttp.TCPConnector(ssl=context, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.sleep(2.0)  # let them connect first
        while time.monotonic() < stop_at - 1:
            began = time.monotonic()
            scrapes[await scrape(session, url)] += 1
            usage.sample()
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
        await asyncio.gather(*attackers)
        await asyncio.sleep(2.0)
        after = await scrape(session, url)
    usage.sample()
    return [
        f"TLS half-handshake flood: {count} connections (half silent, half with the start of a "
        f"ClientHello), reopened when closed, {duration:.0f}s",
        f"  HTTPS scrapes meanwhile (new connection each, 10s timeout): "
        f"{dict(sorted(scrapes.items()))}; scrape after: {after}",
        f"  attacker: {dict(sorted(counts.items()))}",
        usage.line(),
    ]


async def password_phase(
    usage: Usage, port: int, users: dict[str, str], duration: float
) -> list[str]:
    """``FLOOD_LOOPS`` loops of wrong passwords from 127.0.0.1; cached and uncached scrapers."""
    url = f"http://127.0.0.1:{port}/metrics"
    flood: Counter[str] = Counter()
    cached: Counter[str] = Counter()
    uncached = {"127.0.0.1": Counter[str](), "127.0.0.2": Counter[str]()}
    fresh = iter(sorted(u for u in users if u != "prometheus"))
    stop = asyncio.Event()

    def auth(user: str, password: str) -> aiohttp.BasicAuth:
        return aiohttp.BasicAuth(user, password)

    async def guess(session: aiohttp.ClientSession, loop: int) -> None:
        attempt = 0
        while not stop.is_set():
            flood[
                await scrape(session, url, auth=auth("prometheus", f"guess-{loop}-{attempt}"))
            ] += 1
            attempt += 1

    def from_address(address: str) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))

    async with from_address("127.0.0.1") as local, from_address("127.0.0.2") as other:
        assert await scrape(local, url, auth=auth("prometheus", "scrape")) == "200"  # now cached
        usage.sample()
        guessers = [asyncio.create_task(guess(local, n)) for n in range(FLOOD_LOOPS)]
        await asyncio.sleep(2.0)
        stop_at = time.monotonic() + duration
        while time.monotonic() < stop_at:
            began = time.monotonic()
            cached[await scrape(local, url, auth=auth("prometheus", "scrape"))] += 1
            for address, session in (("127.0.0.1", local), ("127.0.0.2", other)):
                user = next(fresh, None)
                if user is not None:
                    uncached[address][await scrape(session, url, auth=auth(user, users[user]))] += 1
            usage.sample()
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
        stop.set()
        await asyncio.gather(*guessers)
    usage.sample()
    return [
        f"wrong-password flood: {FLOOD_LOOPS} loops from 127.0.0.1, a new wrong password each "
        f"time (bcrypt cost {BCRYPT_COST}), {duration:.0f}s",
        f"  flood answers: {dict(sorted(flood.items()))}",
        f"  cached scraper (127.0.0.1, verified before the flood), one a second: "
        f"{dict(sorted(cached.items()))}",
        f"  uncached scrapers (a user never verified before, each once) from another address "
        f"(127.0.0.2): {dict(sorted(uncached['127.0.0.2'].items()))}",
        f"  uncached scrapers from the flood's own address (127.0.0.1): "
        f"{dict(sorted(uncached['127.0.0.1'].items()))}",
        usage.line(),
    ]
