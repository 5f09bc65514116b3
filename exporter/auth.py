"""Basic auth (bcrypt, cached) and configured response headers, reloadable on SIGHUP."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

from aiohttp import BasicAuth, hdrs, web
from aiohttp.typedefs import Handler, Middleware

from exporter.client_connection import Busy
from exporter.credentials import AuthBusy, BasicAuthenticator, BcryptPool
from exporter.webconfig import (
    WebConfig,
    WebConfigError,
    build_ssl_context,
    load_cert_chain,
    load_web_config,
)

log = logging.getLogger(__name__)


REALM = "hwcache-exporter"
CHALLENGE = {hdrs.WWW_AUTHENTICATE: f'Basic realm="{REALM}"'}
# Liveness only: it says nothing but "Healthy." and probes often carry no credentials.
AUTH_EXEMPT_PATHS = frozenset({"/-/healthy"})
RELOAD_FAILED = "web config reload failed, keeping the previous config"


def _credentials(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get(hdrs.AUTHORIZATION)
    if not header:
        return None
    try:
        auth = BasicAuth.decode(header, encoding="utf-8")
    except ValueError:
        return None
    return auth.login, auth.password


async def _authenticate(
    authenticator: BasicAuthenticator, credentials: tuple[str, str] | None, source: str | None
) -> None:
    """Raise 401 unless ``credentials`` are valid, 503 when ``source`` has too many checks."""
    try:
        ok = credentials is not None and await authenticator.verify(*credentials, source)
    except AuthBusy:
        raise web.HTTPServiceUnavailable(
            text="too many password checks in progress, retry later\n",
            headers={"Retry-After": "1"},
        ) from None
    if not ok:
        raise web.HTTPUnauthorized(text="Unauthorized\n", headers=CHALLENGE)


class WebSecurity:
    """The active web config: users, headers, TLS context; swapped whole on reload."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        # One pool for the process: a reload must not reset the bound on bcrypt work.
        self.pool = BcryptPool()
        self.authenticator = BasicAuthenticator(config.users, self.pool)
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
        """Re-read the file; on any error, or if it turns auth or TLS off, keep the current config."""
        path = self.config.path
        if path is None:
            return False
        try:
            config = await asyncio.to_thread(load_web_config, path)
            self._refuse_downgrade(config)
            self._reload_tls(config)
        except WebConfigError as exc:
            log.error("%s: %s", RELOAD_FAILED, exc)
            return False
        except Exception as exc:  # a background task: never a traceback, never half applied
            log.error("%s: %s: %s: %s", RELOAD_FAILED, path, type(exc).__name__, exc)
            log.debug("web config reload failure", exc_info=True)
            return False
        old = self.authenticator
        authenticator = BasicAuthenticator(config.users, self.pool, old.verified, old.rejected)
        self.config, self.authenticator = config, authenticator
        log.info(
            "web config reloaded from %s: %d users, %d headers, verified credentials kept: %d",
            path,
            len(config.users),
            len(config.headers),
            authenticator.kept,
        )
        return True

    def _refuse_downgrade(self, config: WebConfig) -> None:
        """Fail closed: a reload never drops every user or TLS (an emptied or truncated file)."""
        missing = []
        if self.authenticator.enabled and not config.users:
            missing.append(("basic_auth_users", "basic auth"))
        if self.ssl_context is not None and config.tls is None:
            missing.append(("tls_server_config", "TLS"))
        if missing:
            keys = " and no ".join(key for key, _ in missing)
            features = " and ".join(feature for _, feature in missing)
            raise WebConfigError(
                f"{config.path}: the new file has no {keys}; turning {features} off needs a restart"
            )

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

    def install(self, app: web.Application) -> None:
        """Add authentication and the configured headers to ``app`` when a file configures them.

        Without a file there is nothing to enforce, ever (a reload reads no file), and a
        middleware costs each request more than a response-cache hit does.
        """
        if self.config.path is None:
            return
        app.middlewares.append(self.middleware())
        app.on_response_prepare.append(self.add_headers)

    def middleware(self) -> Middleware:
        """Every request but the liveness probe needs valid credentials when users are set.

        It runs before the handlers and their request limit, so unauthenticated traffic never
        takes a request slot; bcrypt work is bounded by its own pool instead.
        """

        @web.middleware
        async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
            authenticator = self.authenticator
            if authenticator.enabled and request.path not in AUTH_EXEMPT_PATHS:
                credentials = _credentials(request)
                # A recently verified client is let in here without awaiting anything, so it
                # never waits behind password checks of other clients.
                if credentials is None or not authenticator.cached(*credentials):
                    with Busy(request):  # waiting for a password check is not idle
                        await _authenticate(authenticator, credentials, request.remote)
            return await handler(request)

        return authenticate

    async def add_headers(self, _: web.Request, response: web.StreamResponse) -> None:
        """``on_response_prepare``: the configured headers go on every response, errors too."""
        response.headers.update(self.config.headers)


WEB_SECURITY = web.AppKey("web_security", WebSecurity)
