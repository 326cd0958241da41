"""`framework.testing` for function mode: a runtime on the fake, a module serving it, Contour calls into it.

runtime = await foundry.runtime("geo", deployed_app_rid="ri.foundry.main.deployed-app.geo")
async with runtime.running(GeoFunctions):
    result = await foundry.contour.execute(runtime.deployed_app_rid, "distance", {"a": ..., "b": ...})
assert result.value == {"km": 343.5}
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiohttp

from ._functions import FunctionEnvironment, FunctionModule, serve_function_module
from ._logging import get_logger

M = TypeVar("M", bound=FunctionModule)


class FakeFoundry(Protocol):
    """What these helpers need of `framework.testing.FakeFoundry`."""

    @property
    def url(self) -> str: ...
    @property
    def admin_token(self) -> str: ...
    @property
    def session(self) -> aiohttp.ClientSession: ...
    async def call(self, method: str, path: str, **kwargs: Any) -> Any: ...


RUNTIMES = "/_emulate/foundry/compute-modules/runtimes"
CONTOUR = "/contour-backend-multiplexer/api/module-group-multiplexer"


@dataclass(frozen=True)
class ContourResult:
    """What a Contour call answered: the raw body, and helpers to read it."""

    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def value(self) -> Any:
        """The result as one JSON value (a plain function's return value)."""
        return json.loads(self.body)

    @property
    def values(self) -> list[Any]:
        """The result as the JSON values a streaming function sent, one per chunk, no separator."""
        decoder, text, found, at = json.JSONDecoder(), self.body.decode(), [], 0
        while at < len(text):
            value, at = decoder.raw_decode(text, at)
            found.append(value)
            while at < len(text) and text[at].isspace():
                at += 1
        return found

    @property
    def error(self) -> str | None:
        """The emulator's error name (`job_failed`, `job_timeout`, `not_found`, ...) of a refused call."""
        return None if self.ok else str(self.value.get("error"))


@dataclass
class Contour:
    """Contour's job API on the fake, as an application calls it (as the admin unless `token` is given)."""

    foundry: FakeFoundry
    token: str | None = None

    async def _call(self, method: str, path: str, **kwargs: Any) -> ContourResult:
        headers = {"Authorization": f"Bearer {self.token or self.foundry.admin_token}"}
        async with self.foundry.session.request(
            method, f"{self.foundry.url}{CONTOUR}{path}", headers=headers, **kwargs
        ) as resp:
            return ContourResult(resp.status, await resp.read())

    @staticmethod
    def _body(app: str, query_type: str, query: Any, branch: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"deployedAppRid": app, "queryType": query_type, "query": query or {}}
        if branch:
            body["deployedAppBranch"] = branch
        return body

    async def execute(
        self, app: str, query_type: str, query: Any = None, *, branch: str | None = None
    ) -> ContourResult:
        """Synchronous execute: waits for the result (up to the fake's sync timeout, 30 s by default)."""
        return await self._call(
            "POST", "/compute-modules/jobs/execute", json=self._body(app, query_type, query, branch)
        )

    async def submit(self, app: str, query_type: str, query: Any = None, *, branch: str | None = None) -> str:
        """Asynchronous submit; returns the job id (`status`, `wait` and `result` take it)."""
        answer = await self._call("POST", "/deployed-apps/jobs", json=self._body(app, query_type, query, branch))
        if not answer.ok:
            raise AssertionError(f"submit {query_type} -> {answer.status}: {answer.body.decode()}")
        return str(answer.value["id"])

    async def status(self, job_id: str) -> dict[str, Any]:
        answer = await self._call("GET", f"/jobs/{job_id}/status")
        status: dict[str, Any] = answer.value
        return status

    async def wait(self, job_id: str, *, timeout_s: float = 20) -> dict[str, Any]:
        """Poll the status until the job succeeded or failed. Limits: polls every 20 ms."""
        deadline = time.monotonic() + timeout_s
        while (status := await self.status(job_id))["type"] not in ("succeeded", "failed"):
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is still {status['type']} after {timeout_s}s")
            await asyncio.sleep(0.02)
        return status

    async def result(self, job_id: str) -> ContourResult:
        return await self._call("PUT", "/jobs/result/v2", json={"id": job_id})


@dataclass
class Runtime:
    """A compute-module runtime on the fake: the environment a function-mode container would get."""

    foundry: FakeFoundry
    runtime_id: str
    token: str
    deployed_app_rid: str | None
    environ: dict[str, str] = field(default_factory=dict)

    async def state(self) -> dict[str, Any]:
        """`{runtime: {connected, last_poll_at, ...}, schemas: [...], jobs: {status: count}}`."""
        state: dict[str, Any] = await self.foundry.call("GET", f"{RUNTIMES}/{self.runtime_id}")
        return state

    @asynccontextmanager
    async def running(
        self, module: type[M] | M, *, extra_env: Mapping[str, str] | None = None, timeout_s: float = 30
    ) -> AsyncIterator[M]:
        """Serve `module` in this event loop for the body of the `with`, ready (schemas posted) on entry.

        Leaving the block stops it: polling stops, running jobs finish. Limits: no signal handlers and no exit
        codes (run `connector run` as a process with `runtime.environ` for those); shares the test's loop.
        """
        env = FunctionEnvironment.load({**self.environ, **(extra_env or {})})
        instance = module(env.environ) if isinstance(module, type) else module
        stopping = asyncio.Event()
        log = get_logger("function_module", connector=instance.module_name)
        task = asyncio.create_task(
            serve_function_module(instance, env, log=log, handle_signals=False, stopping=stopping)
        )
        try:
            deadline = time.monotonic() + timeout_s
            while not (await self.state())["schemas"] and not task.done():
                if time.monotonic() > deadline:
                    raise AssertionError(f"{instance.module_name} did not register its schemas in {timeout_s}s")
                await asyncio.sleep(0.02)
            if task.done():
                task.result()  # it failed to start: raise why
            yield instance
        finally:
            stopping.set()
            await asyncio.wait_for(task, timeout_s)
