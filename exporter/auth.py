"""Basic auth (bcrypt, cached) and configured response headers, reloadable on SIGHUP."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import bcrypt
from aiohttp import BasicAuth, hdrs, web
from aiohttp.typedefs import Middleware
from cachetools import TTLCache

from exporter.limits import RequestLimiter, check_query_size
from exporter.response_cache import ResponseCache
from exporter.webconfig import (
    WebConfig,
    WebConfigError,
    build_ssl_context,
    load_cert_chain,
    load_web_config,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REALM = "hwcache-exporter"
CHALLENGE = {hdrs.WWW_AUTHENTICATE: f'Basic realm="{REALM}"'}
# Liveness only: it says nothing but "Healthy." and probes often carry no credentials.
AUTH_EXEMPT_PATHS = frozenset({"/-/healthy"})
BCRYPT_MAX_PASSWORD = 72  # bcrypt ignores (bcrypt>=5 rejects) longer passwords
CACHE_SIZE = 1024
CACHE_TTL = 600.0
# bcrypt is CPU-bound: at most this many checks at once, so a flood of bad passwords
# cannot occupy every worker thread the blocking collectors need.
BCRYPT_CONCURRENCY = 2


class BasicAuthenticator:
    """Verifies user/password against bcrypt hashes; caches successful checks."""

    def __init__(
        self, users: Mapping[str, bytes], cache_size: int = CACHE_SIZE, ttl: float = CACHE_TTL
    ) -> None:
        self.users = dict(users)
        self.checks = 0  # bcrypt.checkpw calls, for tests and debugging
        self._verified: TTLCache[bytes, bool] = TTLCache(cache_size, ttl)
        self._slots = asyncio.Semaphore(BCRYPT_CONCURRENCY)
        self._decoy = self._make_decoy() if self.users else b""

    @property
    def enabled(self) -> bool:
        """True when the config lists users (then every request needs credentials)."""
        return bool(self.users)

    def _make_decoy(self) -> bytes:
        # Unknown users are checked against a hash of the highest configured cost, so the
        # response time does not tell which user names exist.
        cost = max(int(h.split(b"$")[2]) for h in self.users.values())
        return bcrypt.hashpw(b"hwcache-exporter decoy", bcrypt.gensalt(rounds=cost))

    async def verify(self, user: str, password: str) -> bool:
        """True when the credentials match; bcrypt runs in a worker thread."""
        secret = password.encode()
        # A user name never contains ':' (Basic auth splits on the first one): unambiguous key.
        key = hashlib.sha256(user.encode() + b":" + secret).digest()
        if key in self._verified:
            return True
        if len(secret) > BCRYPT_MAX_PASSWORD:
            return False
        hashed = self.users.get(user)
        async with self._slots:
            self.checks += 1
            try:
                ok = await asyncio.to_thread(bcrypt.checkpw, secret, hashed or self._decoy)
            except ValueError:  # a hash bcrypt cannot parse; validation should prevent it
                log.exception("bcrypt rejected the configured hash of user %r", user)
                return False
        if ok and hashed is not None:
            self._verified[key] = True
            return True
        return False


def _credentials(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get(hdrs.AUTHORIZATION)
    if not header:
        return None
    try:
        auth = BasicAuth.decode(header, encoding="utf-8")
    except ValueError:
        return None
    return auth.login, auth.password


class WebSecurity:
    """The active web config: users, headers, TLS context; swapped whole on reload."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.authenticator = BasicAuthenticator(config.users)
        self.ssl_context: ssl.SSLContext | None = None
        if config.tls is not None:
            self.ssl_context = build_ssl_context(config.tls)
        self._serving_tls = config.tls
        self._tasks: set[asyncio.Task[bool]] = set()

    @classmethod
    def from_file(cls, path: Path | None) -> WebSecurity:
        """Load ``path`` (None = no TLS, no auth); raises WebConfigError."""
        return cls(load_web_config(path) if path is not None else WebConfig())

    def schedule_reload(self) -> None:
        """SIGHUP handler: reload in the background (file reads and bcrypt off the loop)."""
        task = asyncio.get_running_loop().create_task(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> bool:
        """Re-read the file; on any error log it and keep the current config."""
        path = self.config.path
        if path is None:
            return False
        try:
            config = await asyncio.to_thread(load_web_config, path)
            authenticator = await asyncio.to_thread(BasicAuthenticator, config.users)
            self._reload_tls(config)
        except WebConfigError as exc:
            log.error("web config reload failed, keeping the previous config: %s", exc)
            return False
        self.config, self.authenticator = config, authenticator
        log.info(
            "web config reloaded from %s: %d users, %d headers",
            path,
            len(config.users),
            len(config.headers),
        )
        return True

    def _reload_tls(self, config: WebConfig) -> None:
        old, new = self._serving_tls, config.tls
        if old is None or new is None or self.ssl_context is None:
            if (old is None) != (new is None):
                log.warning("turning TLS on or off needs a restart; the listener is unchanged")
            return
        if new.policy() != old.policy():
            log.warning(
                "TLS client auth, client CAs and versions change only on restart; "
                "reloading the certificate and key only"
            )
        if (new.cert_pem, new.key_pem) != (old.cert_pem, old.key_pem):
            load_cert_chain(self.ssl_context, new)
            log.info("TLS certificate reloaded")
        self._serving_tls = new

    def middleware(
        self,
        limiter: RequestLimiter,
        cached_paths: frozenset[str] = frozenset(),
        cache: ResponseCache | None = None,
    ) -> Middleware:
        """One middleware (one layer per request): headers, max-requests, auth, query size.

        The configured headers go on every response, errors too; the request limit is checked
        before auth so it also bounds bcrypt work.
        """

        @web.middleware
        async def front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
            headers = self.config.headers
            response: web.StreamResponse
            try:
                limited = limiter.enter(request)
                try:
                    if self.authenticator.enabled:
                        await self._authenticate(request)
                    if request.query_string:
                        check_query_size(request)
                    if (
                        cache is not None
                        and request.method == "GET"
                        and request.path in cached_paths
                    ):
                        # The response cache sits here, inside the checks: one layer, not two,
                        # and a hit is answered without another coroutine.
                        key = cache.key(request, cache.current_generation())
                        cached = cache.get(key)
                        if cached is not None:
                            response = web.Response(body=cached.body, headers=cached.headers)
                        else:
                            response = await cache.fill(request, handler, key)
                    else:
                        response = await handler(request)
                finally:
                    if limited:
                        limiter.leave()
            except web.HTTPException as exc:
                if headers:
                    exc.headers.update(headers)
                raise
            if headers and not response.prepared:
                response.headers.update(headers)
            return response

        return front_door

    async def _authenticate(self, request: web.Request) -> None:
        """Raise 401 unless the request carries valid credentials (exempt paths excepted)."""
        if request.path in AUTH_EXEMPT_PATHS:
            return
        credentials = _credentials(request)
        if credentials is None or not await self.authenticator.verify(*credentials):
            raise web.HTTPUnauthorized(text="Unauthorized\n", headers=CHALLENGE)

    def middlewares(
        self,
        max_requests: int,
        cached_paths: frozenset[str] = frozenset(),
        cache: ResponseCache | None = None,
    ) -> list[Middleware]:
        """The security middlewares, outermost first (one combined layer, response cache inside)."""
        return [self.middleware(RequestLimiter(max_requests), cached_paths, cache)]


WEB_SECURITY = web.AppKey("web_security", WebSecurity)
