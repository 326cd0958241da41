"""A reverse proxy on 127.0.0.1 in front of the fake that can hold or fail dataset transaction commits.

It lets a test stop time at the moments that matter for exactly-what-was-committed questions: a commit
sent but not yet applied ("hold"), applied but not yet acknowledged ("hold_response"), or refused ("fail").
Everything else is forwarded untouched (raw path and query, so percent-encoding survives).
"""

from __future__ import annotations

import asyncio
import re
from types import TracebackType
from typing import Literal

import aiohttp
from aiohttp import web
from yarl import URL

Action = Literal["forward", "hold", "hold_response", "fail"]
_COMMIT = re.compile(r"^/api/v2/datasets/[^/]+/transactions/[^/]+/commit$")
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


class FaultProxy:
    """`commit_actions[n]` decides the n-th commit (1-based; default "forward"); `release()` opens the gate.

    A held request waits at the gate; once released it goes on, unless `drop_held` is set, in which
    case it is answered 503 and never reaches the fake (its client was killed: it must not land late).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.commit_actions: dict[int, Action] = {}
        self.commits = 0  # commit requests seen
        self.held = 0  # requests waiting at the gate now
        self.failed = 0  # commits answered with an error
        self.drop_held = False
        self.gate = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def release(self) -> None:
        """Let every request held now go on; later holds wait at a new gate."""
        self.gate.set()
        self.gate = asyncio.Event()

    async def __aenter__(self) -> FaultProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.drop_held = True
        self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        action: Action = "forward"
        if request.method == "POST" and _COMMIT.match(request.path):
            self.commits += 1
            action = self.commit_actions.get(self.commits, "forward")
        if action == "fail":
            self.failed += 1
            envelope = {"errorCode": "INVALID_ARGUMENT", "errorName": "InjectedCommitFailure", "parameters": {}}
            return web.json_response(envelope, status=400)
        if action == "hold":
            await self._wait_at_gate()
            if self.drop_held:
                return web.json_response({"errorCode": "UNAVAILABLE", "errorName": "Dropped"}, status=503)
        status, headers, body = await self._forward(request)
        if action == "hold_response":
            await self._wait_at_gate()
        return web.Response(status=status, headers=headers, body=body)

    async def _wait_at_gate(self) -> None:
        gate = self.gate
        self.held += 1
        try:
            await gate.wait()
        finally:
            self.held -= 1

    async def _forward(self, request: web.Request) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.read()
        url = URL(self.upstream + request.raw_path, encoded=True)
        async with self._session.request(request.method, url, headers=headers, data=body) as resp:
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP}
            return resp.status, out, await resp.read()
