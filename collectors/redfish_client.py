"""A small Redfish HTTP client: session login, re-login on 401, bounded and timed requests."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict

from collectors.base import CollectorError
from collectors.toolkit.remote import RemoteModule, RemoteTarget

SESSIONS = "/redfish/v1/SessionService/Sessions"
ROOT = "/redfish/v1/"
PARALLEL = 4  # requests in flight per target
log = logging.getLogger(__name__)


class NotFound(CollectorError):
    """The service does not expose this resource (HTTP 404)."""


class RedfishClient:
    """One per target; keeps its session token between polls (sessions outlive a poll)."""

    def __init__(
        self, http: aiohttp.ClientSession, module: RemoteModule, target: RemoteTarget
    ) -> None:
        self.http = http
        self.module = module
        self.base = f"{module.scheme}://{target.netloc()}"
        self.token: str | None = None
        self.session: str | None = None  # the session's path, DELETEd to log out
        self.basic: str | None = None  # Authorization header for services without sessions
        self.logins = 0
        self._parallel = asyncio.Semaphore(PARALLEL)
        self._login_lock = asyncio.Lock()

    async def get(self, path: str) -> dict[str, Any]:
        """GET a resource of this service as a JSON object; re-login once if the session expired."""
        if not path.startswith(ROOT):
            raise CollectorError(f"refusing to follow a link outside {ROOT}: {path[:100]!r}")
        async with self._parallel:
            if self.token is None and self.basic is None:
                async with self._login_lock:
                    if self.token is None and self.basic is None:
                        await self.login()
            token = self.token
            status, _, body = await self._request("GET", path)
            if status == 401 and self.token is not None:
                async with self._login_lock:
                    if self.token == token:  # nobody logged in again meanwhile
                        self.token = None
                        await self.login()
                status, _, body = await self._request("GET", path)
        if status == 404:
            raise NotFound(f"GET {path}: HTTP 404")
        if status != 200:
            raise CollectorError(f"GET {path}: HTTP {status}{_hint(status)}")
        return _json_object(path, body)

    async def login(self) -> None:
        """POST a session; fall back to Basic auth where the service has no session service."""
        module = self.module
        try:
            user, password = module.username.read(), module.password.read()
        except (OSError, ValueError) as exc:
            raise CollectorError(f"cannot read the credentials: {exc}") from None
        self.logins += 1
        payload = {"UserName": user, "Password": password}
        basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        # Basic auth too: services that guard every URL (sushy-emulator) then answer 404/405.
        status, headers, body = await self._request("POST", SESSIONS, payload, basic)
        token = headers.get("X-Auth-Token")
        if status in (200, 201) and token:
            self.token, self.basic = token, None
            self.session = _session_path(headers.get("Location"), body)
        elif status in (404, 405, 501) or (status < 300 and not token):
            self.token, self.basic = None, basic
        else:
            raise CollectorError(f"login: HTTP {status}{_hint(status)}")

    async def logout(self) -> None:
        """DELETE the session (best effort): BMCs have few session slots, and wait for expiry."""
        token, path = self.token, self.session
        self.token = self.session = None
        if token is None or path is None:
            return
        try:
            status, _, _ = await self._request("DELETE", path, token=token)
        except CollectorError as exc:
            log.debug("logout from %s failed: %s", self.base, exc)
            return
        if status >= 300 and status != 404:  # 404: the session had expired already
            log.debug("logout from %s: HTTP %d", self.base, status)

    async def _request(
        self,
        method: str,
        path: str,
        payload: dict[str, str] | None = None,
        auth: str | None = None,
        token: str | None = None,
    ) -> tuple[int, CIMultiDict[str], bytes]:
        headers = {"Accept": "application/json", "OData-Version": "4.0"}
        token = token or self.token
        if token is not None and payload is None:
            headers["X-Auth-Token"] = token
        basic = auth if payload is not None else self.basic
        if basic is not None:
            headers["Authorization"] = basic
        limit = self.module.max_response_bytes
        timeout = aiohttp.ClientTimeout(total=self.module.request_timeout)
        try:
            async with self.http.request(
                method,
                self.base + path,
                json=payload,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                length = response.content_length
                if length is not None and length > limit:
                    raise CollectorError(f"{method} {path}: response of {length} bytes > {limit}")
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > limit:
                        raise CollectorError(f"{method} {path}: response larger than {limit} bytes")
                return response.status, CIMultiDict(response.headers), bytes(body)
        except TimeoutError:
            raise CollectorError(
                f"{method} {path}: no answer within {self.module.request_timeout:g}s"
            ) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise CollectorError(_untrusted(exc)) from None
        except aiohttp.ClientError as exc:
            raise CollectorError(f"{method} {path}: {type(exc).__name__}: {exc}") from None


def _session_path(location: str | None, body: bytes) -> str | None:
    """The new session's path: the Location header, else the body's @odata.id."""
    if location is None:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        odata_id = data.get("@odata.id") if isinstance(data, dict) else None
        location = odata_id if isinstance(odata_id, str) else None
    path = urlsplit(location).path if location else ""
    # Only a member of the session collection: a logout deletes nothing else.
    if path.startswith(SESSIONS + "/") and len(path) > len(SESSIONS) + 1:
        return path
    return None


def _untrusted(exc: aiohttp.ClientConnectorCertificateError) -> str:
    """What failed in a TLS certificate check, and what to configure."""
    error = exc.certificate_error
    reason = getattr(error, "verify_message", None) or str(error)
    return (
        f"TLS certificate of {exc.host}:{exc.port} not trusted ({reason}): give the CA that "
        "signed it in the module's ca_file, or set tls_verify: false"
    )


def _json_object(path: str, body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CollectorError(f"GET {path}: malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CollectorError(f"GET {path}: expected a JSON object")
    return data


def _hint(status: int) -> str:
    return " (check the credentials)" if status in (401, 403) else ""
