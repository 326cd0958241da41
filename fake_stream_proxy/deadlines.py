"""Stalled requests end: a client that stops sending mid-request must not hold a handler forever.

Two halves, both `FakeOptions.read_timeout_s`: headers that never complete are closed by aiohttp's
keep-alive timer (`runner_settings`, which the fake passes to `web.AppRunner`; it runs from connection start
and also closes idle connections), and a body that stops arriving is answered 408 (`stall_middleware`).
The body check is on progress, not on total time: a slow upload that keeps moving is never cut off, and a
handler that holds a request open after reading its body (a long poll) is not affected.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import StreamReader, web
from aiohttp.typedefs import Middleware

from .errors import Handler, envelope_response


def runner_settings(read_timeout_s: float) -> dict[str, Any]:
    """`web.AppRunner` keyword arguments: close connections whose request headers stall."""
    return {"keepalive_timeout": read_timeout_s}


def stall_middleware(read_timeout_s: float) -> Middleware:
    """A middleware answering 408 when a request body gets no new byte for `read_timeout_s`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        content = request.content
        if not request.body_exists or content.is_eof():
            return await handler(request)
        try:
            async with asyncio.timeout(None) as deadline:
                watchdog = asyncio.create_task(_watch(content, read_timeout_s, deadline))
                try:
                    return await handler(request)
                finally:
                    watchdog.cancel()
        except TimeoutError:
            if not deadline.expired():
                raise
        message = f"no request body bytes for {read_timeout_s:g} s"
        response = envelope_response(408, "Default:RequestTimeout", {"message": message})
        response.force_close()
        content.feed_eof()  # so aiohttp closes after answering instead of lingering for the rest of the body
        return response

    return middleware


async def _watch(content: StreamReader, stall_s: float, deadline: asyncio.Timeout) -> None:
    """Expire `deadline` once the body is still incomplete and has not grown for `stall_s`."""
    seen = -1
    while not content.is_eof():
        if content.total_bytes == seen:
            deadline.reschedule(asyncio.get_running_loop().time())
            return
        seen = content.total_bytes
        await asyncio.sleep(stall_s)
