"""The compute-module service as the module sees it: post schemas, report the restart, poll, post results.

One aiohttp session for every call. Connection faults, 429 and 5xx are retried with capped exponential
backoff and full jitter for as long as the module runs (a Foundry restart is waited out, logged once when it
starts and once when it ends); a 401 re-reads the module token file, then backs off like a fault.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .._logging import get_logger, register_secret
from .environment import FunctionEnvironment

_log = get_logger("framework.functions")
_RETRIED = {429, 500, 502, 503, 504}
Body = bytes | AsyncIterator[bytes]


class RuntimeStopped(Exception):
    """The module is stopping: a call that was still retrying gives up."""


class _Replayable:
    """A streamed result that can be sent again after a fault: chunks sent so far are kept."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._sent: list[bytes] = []
        self._started = False

    def body(self) -> Body:
        if not self._started:
            self._started = True
            return self._tee()
        return self._rest()

    async def _tee(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            self._sent.append(chunk)
            yield chunk

    async def _rest(self) -> AsyncIterator[bytes]:
        for chunk in list(self._sent):
            yield chunk
        async for chunk in self._tee():
            yield chunk


class RuntimeClient:
    def __init__(self, env: FunctionEnvironment, session: aiohttp.ClientSession, stopping: asyncio.Event) -> None:
        self.env = env
        self.session = session
        self.stopping = stopping
        self._token = env.read_token()
        register_secret(self._token)
        self._outage_since: float | None = None

    async def post_schemas(self, specs: list[dict[str, Any]]) -> None:
        await self._call("POST", self.env.post_schema_path, data=json.dumps(specs).encode(), json_body=True)

    async def report_restart(self) -> list[str]:
        status, body = await self._call("POST", self.env.restart_path)
        try:
            removed = json.loads(body) if status == 200 and body else []
        except ValueError:
            removed = []
        return [str(x) for x in removed] if isinstance(removed, list) else []

    async def poll(self) -> dict[str, Any] | None:
        """One (long-)poll: the job envelope, or None when nothing was queued."""
        status, body = await self._call("GET", self.env.get_job_path, timeout_s=120)
        if status != 200:
            return None
        try:
            job = json.loads(body)
        except ValueError:
            _log.error("job poll answered with a body that is not JSON; polling again", size_bytes=len(body))
            return None
        return job if isinstance(job, dict) else None

    async def post_result(self, job_id: str, body: bytes | AsyncIterator[bytes]) -> None:
        path = f"{self.env.post_result_path}/{job_id}"
        if isinstance(body, bytes):
            await self._call("POST", path, data=body)
            return
        replay = _Replayable(body)
        await self._call("POST", path, data=replay)

    async def _call(
        self, method: str, path: str, *, data: Any = None, json_body: bool = False, timeout_s: float = 60
    ) -> tuple[int, bytes]:
        attempt = 0
        reread = False
        while True:
            if self.stopping.is_set() and method == "GET":
                raise RuntimeStopped()
            payload = data.body() if isinstance(data, _Replayable) else data
            headers = {"Module-Auth-Token": self._token}
            headers["Content-Type"] = "application/json" if json_body else "application/octet-stream"
            cause: str
            try:
                async with self.session.request(
                    method,
                    self.env.base_url + path,
                    data=payload,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout_s),
                ) as resp:
                    body = await resp.read()
                    if resp.status < 400:
                        self._recovered()
                        return resp.status, body
                    if resp.status == 401 and not reread:
                        reread = True
                        self._token = self.env.read_token()
                        register_secret(self._token)
                        continue
                    if resp.status not in _RETRIED and resp.status != 401:
                        _log.error(
                            "compute-module service refused a call",
                            method=method,
                            path=path,
                            status=resp.status,
                            body=body[:300].decode(errors="replace"),
                        )
                        return resp.status, body
                    cause = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                cause = type(exc).__name__
            attempt += 1
            self._outage(method, path, cause, attempt)
            delay = random.uniform(0, min(10.0, 0.2 * 2 ** min(attempt, 10)))
            try:
                await asyncio.wait_for(self.stopping.wait(), delay)
            except TimeoutError:
                continue
            if method == "GET":
                raise RuntimeStopped()
            # Stopping: results and schemas still get one prompt retry each, bounded by the shutdown timer.

    def _outage(self, method: str, path: str, cause: str, attempt: int) -> None:
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            _log.warning("compute-module service unreachable; retrying", method=method, path=path, cause=cause)
        elif attempt % 20 == 0:
            _log.warning("compute-module service still unreachable", down_s=round(now - self._outage_since, 1))

    def _recovered(self) -> None:
        if self._outage_since is not None:
            _log.info("compute-module service reachable again", down_s=round(time.monotonic() - self._outage_since, 1))
            self._outage_since = None
