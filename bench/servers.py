"""Comparison servers for the benchmark: fixed bytes (bare, and behind the exporter's HTTP
layers) and prometheus_client uncached."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.exposition import gzip_accepted
from prometheus_client.registry import CollectorRegistry

from collectors.base import CollectorContext
from collectors.synthetic import SyntheticCollector
from exporter.auth import WebSecurity
from exporter.connections import tracked
from exporter.limits import RequestLimiter
from exporter.render import Families
from exporter.serve import listen_sockets, serve


def fixed_bytes(identity: bytes, gzipped: bytes, content_type: str) -> Handler:
    """A handler returning the same precomputed bytes on every request."""

    async def handler(request: web.Request) -> web.Response:
        if gzip_accepted(request.headers.get("Accept-Encoding", "")):
            return web.Response(
                body=gzipped, headers={"Content-Type": content_type, "Content-Encoding": "gzip"}
            )
        return web.Response(body=identity, headers={"Content-Type": content_type})

    return handler


def baseline_app(identity: bytes, gzipped: bytes, content_type: str) -> web.Application:
    """Fixed bytes from a bare aiohttp application (the upper bound)."""
    app = web.Application()
    app.router.add_get("/metrics", fixed_bytes(identity, gzipped, content_type))
    return app


def layered_app(identity: bytes, gzipped: bytes, content_type: str) -> web.Application:
    """Fixed bytes behind the exporter's request tracking and limit, and its web security
    (nothing without a web config file); ``serve`` adds the connection guard: what any
    response costs in the exporter's HTTP stack."""
    app = web.Application()
    WebSecurity.from_file(None).install(app)
    app.router.add_get(
        "/metrics", RequestLimiter(0)(tracked(fixed_bytes(identity, gzipped, content_type)))
    )
    return app


def client_app(samples: int) -> web.Application:
    """prometheus_client's own aiohttp handler rendering the same families on every request."""
    ctx = CollectorContext(options={"samples": str(samples), "delay": "0"})
    families = list(asyncio.run(SyntheticCollector(ctx).collect()))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families(families))  # rendered anew on every scrape
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    return app


def main() -> None:
    """``servers.py baseline|client --port P ...``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["baseline", "layered", "client"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", type=Path)
    parser.add_argument("--gzip-body", type=Path)
    parser.add_argument("--content-type", default="text/plain; version=0.0.4; charset=utf-8")
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    if args.kind == "layered":
        app = layered_app(args.body.read_bytes(), args.gzip_body.read_bytes(), args.content_type)
        asyncio.run(serve(app, listen_sockets(f"127.0.0.1:{args.port}")))
        return
    if args.kind == "baseline":
        app = baseline_app(args.body.read_bytes(), args.gzip_body.read_bytes(), args.content_type)
    else:
        app = client_app(args.samples)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
