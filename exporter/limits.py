"""Request limits: concurrent requests (``--web.max-requests``), query size, parser bounds."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

# Passed to web.AppRunner (and so to aiohttp's HTTP parser): a longer request line or
# header, or more headers, is answered 400 by aiohttp before any handler runs.
PARSER_LIMITS: dict[str, Any] = {
    "max_line_size": 8190,  # request line, so the query string too
    "max_field_size": 8190,  # one header
    "max_headers": 64,
}
MAX_QUERY_PARAMS = 100
# Larger bodies are written a chunk at a time, each once the client has taken most of the one
# before: a client that does not read holds about this much in the server, not the whole body.
# Each write is a send to the kernel: 64 KiB chunks made a 570 KB body cost 1.7x the CPU of
# one write (bench/bench.py, 10,000 samples uncompressed).
BODY_CHUNK = 1024 * 1024


class RequestLimiter:
    """Counts requests in flight; past ``limit`` answers 503 at once (no queue)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.rejected = 0

    def __call__(self, handler: Handler) -> Handler:
        """``handler`` counted against the limit until its response is written."""

        @functools.wraps(handler)
        async def limited(request: web.Request) -> web.StreamResponse:
            counted = self.enter()
            try:
                if request.query_string:
                    check_query_size(request)
                # ``handler`` writes its response (connections.tracked): a client that does
                # not read its body keeps the slot.
                return await handler(request)
            finally:
                if counted:
                    self.leave()

        return limited

    def enter(self) -> bool:
        """Count a request in (503 past the limit); ``False`` when there is no limit."""
        if self.limit <= 0:
            return False
        if self.in_flight >= self.limit:
            self.rejected += 1
            raise web.HTTPServiceUnavailable(
                text=f"too many concurrent requests (--web.max-requests={self.limit})\n",
                headers={"Retry-After": "1"},
            )
        self.in_flight += 1
        return True

    def leave(self) -> None:
        """Count a finished request out."""
        self.in_flight -= 1


def check_query_size(request: web.Request, max_params: int = MAX_QUERY_PARAMS) -> None:
    """Answer 400 to requests with more than ``max_params`` query parameters."""
    count = len(request.query)
    if count > max_params:
        raise web.HTTPBadRequest(
            text=f"too many query parameters: {count} (at most {max_params})\n"
        )


async def write_response(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Write ``response`` now, a large body as fast as the client reads; the response it became.

    Called inside the request slot and while the connection counts as busy, so a client that
    does not read keeps both until it is cut (``--web.write-timeout``) or leaves.
    """
    if (
        not isinstance(response, web.Response)
        or not isinstance(body := response.body, bytes)
        or len(body) <= BODY_CHUNK
        or response.prepared
        or response.compression
        or response.chunked
        or response.cookies
        or request.method == hdrs.METH_HEAD
    ):
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionError:
            response.force_close()  # the client left: nothing more to send
        return response
    stream = web.StreamResponse(
        status=response.status, reason=response.reason, headers=response.headers
    )
    stream.content_length = len(body)
    if response.keep_alive is False:
        stream.force_close()
    view = memoryview(body)
    try:
        await stream.prepare(request)
        for start in range(0, len(view), BODY_CHUNK):
            await stream.write(view[start : start + BODY_CHUNK])
        await stream.write_eof()
    except ConnectionError:
        # The client left or was cut: the connection is gone, nothing more to send.
        stream.force_close()
    return stream
