"""A small Redfish service on aiohttp with session auth and injectable faults, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

USER, PASSWORD = "monitor", "s3cret-pw-42"
SESSIONS = "/redfish/v1/SessionService/Sessions"
SYSTEM = "/redfish/v1/Systems/1"
CHASSIS = "/redfish/v1/Chassis/1"


def _link(path: str) -> dict[str, str]:
    return {"@odata.id": path}


def resources() -> dict[str, dict[str, Any]]:
    """A minimal service tree: one system with memory and a drive, one chassis."""
    return {
        "/redfish/v1/": {
            "Systems": _link("/redfish/v1/Systems"),
            "Chassis": _link("/redfish/v1/Chassis"),
            "SessionService": _link("/redfish/v1/SessionService"),
        },
        "/redfish/v1/Systems": {"Members": [_link(SYSTEM)]},
        SYSTEM: {
            "Id": "1",
            "Manufacturer": "Contoso",
            "Model": "R1",
            "SerialNumber": "SN1",
            "PowerState": "On",
            "Status": {"Health": "OK"},
            "Memory": _link(SYSTEM + "/Memory"),
            "Storage": _link(SYSTEM + "/Storage"),
        },
        SYSTEM + "/Memory": {"Members": [_link(SYSTEM + "/Memory/DIMM0")]},
        SYSTEM + "/Memory/DIMM0": {"Id": "DIMM0", "CapacityMiB": 16384, "Status": {"Health": "OK"}},
        SYSTEM + "/Storage": {"Members": [_link(SYSTEM + "/Storage/RAID")]},
        SYSTEM + "/Storage/RAID": {"Drives": [_link(SYSTEM + "/Storage/RAID/Drives/0")]},
        SYSTEM + "/Storage/RAID/Drives/0": {
            "Id": "0",
            "CapacityBytes": 960197124096,
            "Status": {"Health": "Critical"},
        },
        "/redfish/v1/Chassis": {"Members": [_link(CHASSIS)]},
        CHASSIS: {
            "Id": "1",
            "Status": {"Health": "Warning"},
            "Thermal": _link(CHASSIS + "/Thermal"),
            "Power": _link(CHASSIS + "/Power"),
        },
        CHASSIS + "/Thermal": {
            "Temperatures": [
                {"Name": "Inlet", "ReadingCelsius": 23.5, "Status": {"Health": "OK"}},
                {"Name": "CPU1", "ReadingCelsius": None},
            ],
            "Fans": [
                {"Name": "Fan1", "Reading": 5400, "ReadingUnits": "RPM"},
                {"Name": "Fan2", "Reading": 40, "ReadingUnits": "Percent"},
            ],
        },
        CHASSIS + "/Power": {
            "PowerControl": [{"Name": "System Power", "PowerConsumedWatts": 212}],
            "PowerSupplies": [
                {"Name": "PSU1", "PowerInputWatts": 230, "Status": {"Health": "Warning"}}
            ],
        },
    }


class FaultyRedfish:
    """State of the fake service: issued tokens, request counts, faults by path."""

    def __init__(self) -> None:
        self.tree = resources()
        self.tokens: set[str] = set()
        self.sessions: dict[str, str] = {}  # session id -> token
        self.logouts = 0
        self.logged_out = asyncio.Event()  # set by every logout
        self.password = PASSWORD  # change it to refuse the exporter's logins
        self.logins = 0
        self.requests: Counter[str] = Counter()
        self.faults: dict[str, str] = {}  # path -> 500 | malformed | huge | stream | slow
        self.release = asyncio.Event()  # ends "slow" responses

    def app(self) -> web.Application:
        """The aiohttp application serving this state."""
        app = web.Application()
        app.router.add_post(SESSIONS, self.login)
        app.router.add_delete(SESSIONS + "/{id}", self.logout)
        app.router.add_get("/{tail:.*}", self.get)
        return app

    async def login(self, request: web.Request) -> web.Response:
        """Issue a token for the right credentials (Redfish session login)."""
        self.requests["login"] += 1
        body = await request.json()
        if body != {"UserName": USER, "Password": self.password}:
            return web.json_response({"error": "bad credentials"}, status=401)
        self.logins += 1
        token, session = secrets.token_hex(8), secrets.token_hex(4)
        self.tokens.add(token)
        self.sessions[session] = token
        path = f"{SESSIONS}/{session}"
        location = str(request.url.with_path(path))  # absolute, as many BMCs send it
        headers = {"X-Auth-Token": token, "Location": location}
        return web.json_response({"@odata.id": path}, status=201, headers=headers)

    async def logout(self, request: web.Request) -> web.Response:
        """End a session (DELETE on it, with its token)."""
        token = self.sessions.get(request.match_info["id"])
        if token is None or request.headers.get("X-Auth-Token") != token:
            return web.json_response({"error": "no such session"}, status=404)
        del self.sessions[request.match_info["id"]]
        self.tokens.discard(token)
        self.logouts += 1
        self.logged_out.set()
        return web.Response(status=204)

    async def get(self, request: web.Request) -> web.StreamResponse:
        """Serve a resource to a valid session, unless a fault is set for it."""
        path = request.path
        self.requests[path] += 1
        if request.headers.get("X-Auth-Token") not in self.tokens:
            return web.json_response({"error": "no valid session"}, status=401)
        fault = self.faults.get(path)
        if fault == "500":
            return web.json_response({"error": "internal"}, status=500)
        if fault == "malformed":
            return web.Response(body=b'{"Members": [', content_type="application/json")
        if fault == "huge":
            return web.Response(body=b" " * 200_000, content_type="application/json")
        if fault == "stream":  # no Content-Length: the bound must hold while reading
            response = web.StreamResponse()
            await response.prepare(request)
            for _ in range(50):
                await response.write(b" " * 8192)
            await response.write_eof()
            return response
        if fault == "slow":
            await self.release.wait()
        if path not in self.tree:
            return web.json_response({"error": "not found"}, status=404)
        return web.Response(text=json.dumps(self.tree[path]), content_type="application/json")


@contextlib.contextmanager
def serving(count: int) -> Iterator[list[tuple[int, FaultyRedfish]]]:
    """``count`` fake services on loopback ports, served by a loop in a thread of their own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-bmcs", daemon=True)
    thread.start()

    async def start() -> tuple[list[web.AppRunner], list[tuple[int, FaultyRedfish]]]:
        runners, services = [], []
        for _ in range(count):
            fake = FaultyRedfish()
            runner = web.AppRunner(fake.app())
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            runners.append(runner)
            services.append((int(runner.addresses[0][1]), fake))
        return runners, services

    runners, services = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        yield services
    finally:
        for runner in runners:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def probe_config(folder: Path, module: dict[str, Any] | None = None, **top: Any) -> Path:
    """A ``--config.file`` with one redfish module ``bmc`` for this fake (http, its password
    from a file in ``folder``); ``module`` adds or replaces module keys, ``top`` top-level ones."""
    (folder / "pass").write_text(PASSWORD + "\n")
    bmc = {
        "driver": "redfish",
        "scheme": "http",
        "username": USER,
        "password_file": str(folder / "pass"),
        "targets": ["127.0.0.1"],
        **(module or {}),
    }
    path = folder / "config.yml"
    path.write_text(yaml.safe_dump({**top, "modules": {"bmc": bmc}}))
    return path
