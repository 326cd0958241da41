"""Applies fault rules to requests: the outermost middleware, so it sees answers as a client would.

`/_fake/*` (the fault API included) is never faulted, so a test can always inspect and clear its rules.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..auth import unauthorized
from ..context import FakeContext
from ..errors import ApiError, Handler, envelope_response
from .store import FaultRule, Request

ADMIN_PREFIX = "/_fake"
NOT_JSON = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
# What a truncated answer is cut from when the real one has no body (a 204).
EMPTY_TRUNCATED = b'{"data": [{"offset": 0, "val'


def fault_middleware(ctx: FakeContext) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == ADMIN_PREFIX or request.path.startswith(ADMIN_PREFIX + "/") or not ctx.faults.rules:
            return await handler(request)
        match_info = request.match_info
        stream = (match_info["rid"], match_info["branch"]) if {"rid", "branch"} <= set(match_info) else None
        facts = Request(request.method, request.path, ctx.auth.job_rid_of(request), stream)
        decider: FaultRule | None = None
        for rule in ctx.faults.fire(facts):
            if rule.action.kind == "latency":
                await asyncio.sleep(float(rule.action.spec["latencyMs"]) / 1000)
            elif rule.action.kind == "resetStream":
                assert stream is not None
                with contextlib.suppress(ApiError):  # no such stream: the handler answers its 404
                    ctx.stream_reset(*stream)
            else:
                decider = rule
        if decider is None:
            return await handler(request)
        return await _apply(decider, request, handler)

    return middleware


async def _apply(rule: FaultRule, request: web.Request, handler: Handler) -> web.StreamResponse:
    """The answer `rule` gives instead of (status, expireToken, drop before) or after (the rest) the fake's."""
    spec = rule.action.spec
    if rule.action.kind == "status":
        message = f"injected by fault rule {rule.rule_id}"
        response = envelope_response(rule.action.status, rule.action.error_name(), {"message": message})
        if spec.get("retryAfterS") is not None:
            response.headers["Retry-After"] = str(spec["retryAfterS"])
        return response
    if rule.action.kind == "expireToken":
        return unauthorized().to_response()
    if spec.get("drop") == "before":
        while await request.content.readany():  # drain, so the close is a clean FIN rather than a reset
            pass
        return _dropped(request)
    answer = await handler(request)  # the request is applied ...
    if spec.get("drop") == "after":
        return _dropped(request)  # ... and its answer lost
    return web.Response(status=200, body=_garbage(spec["garbage"], answer), content_type="application/json")


def _garbage(kind: str, answer: web.StreamResponse) -> bytes:
    """Not JSON at all, or the first half of the real JSON answer (any proper prefix of an object or list)."""
    if kind == "not-json":
        return NOT_JSON
    body = answer.body if isinstance(answer, web.Response) and isinstance(answer.body, bytes) else b""
    source = body if body.startswith((b"{", b"[")) else EMPTY_TRUNCATED
    return source[: len(source) // 2]


def _dropped(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer; aiohttp then cannot write the response and lets it go."""
    if request.protocol is not None:
        request.protocol.force_close()
    return web.Response(status=204)
