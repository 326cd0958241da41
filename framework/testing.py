"""Test a connector against a real local fake Foundry, in your own test suite.

With `pip install 'foundry-connectors[testing]'`, pytest gets the `foundry` fixture (an in-process
`FakeFoundry` in the test's `tmp_path`, from the `framework.pytest_plugin` this distribution registers).
In pytest-asyncio's default strict mode mark async tests `@pytest.mark.asyncio`, or set
`asyncio_mode = "auto"` as `connector init` does. A complete test:

    import pytest
    from pydantic import BaseModel

    from framework import Connector, StreamInput, StreamOutput
    from framework.testing import FakeFoundry


    class Word(BaseModel):
        text: str
        lang: str = "en"


    class Shouter(Connector):  # the same model in and out; an empty word publishes nothing
        words = StreamInput[Word]("words")
        shouted = StreamOutput[Word]("shouted")

        async def transform(self, record: Word) -> Word | None:
            return record.model_copy(update={"text": record.text.upper()}) if record.text else None


    @pytest.mark.asyncio
    async def test_shouter(foundry: FakeFoundry) -> None:
        words = await foundry.create_stream("words", Word, partitions=2)
        shouted = await foundry.create_stream("shouted", Word)
        job = await foundry.job(inputs={"words": words}, outputs={"shouted": shouted})
        await foundry.publish(words, [{"text": t} for t in ("a", "", "bb", "ccc")])

        async def all_committed() -> bool:  # a predicate may be sync or async
            return sum((await job.committed_offsets("words")).values()) == 4

        async with job.running(Shouter):
            out = await foundry.wait_for_records(shouted, 3)  # fails at once if Shouter dies
            await foundry.wait_until(all_committed, timeout_s=20)
        assert sorted(r["value"]["text"] for r in out) == ["A", "BB", "CCC"]

Outside pytest, `async with FakeFoundry(tmp_path) as foundry:` does the same. The fake runs inside the test's
event loop on 127.0.0.1 (real sockets) and keeps its state in the given folder; `job.environ` is the
environment a container would get, usable for a subprocess as well. Read back with `foundry.records(rid)`,
`foundry.read_dataset(rid)` (Arrow) or `foundry.dataset_rows(rid)`, and `foundry.read_media(rid, path)`.

What each helper does not do is said in its docstring: the fake is not Foundry (one process, SQLite, no
real auth service), so timing, quotas and performance seen here say little about production.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import structlog
from pydantic import BaseModel
from structlog.stdlib import BoundLogger
from structlog.testing import capture_logs

from fake_stream_proxy import FakeServer

from ._connector import Connector
from ._driver import Driver
from ._env.environment import Environment, ResourceRef, load_environment
from ._fault_testing import Faults
from ._function_testing import Contour, ContourResult, Runtime
from ._handles import Binding, Handle, ref_of
from ._http import FoundryClient
from ._state.event_time import advance_watermark, partitions_of, publish_at
from ._streams.input import StreamInput
from ._streams.schema import stream_schema
from ._testing_reads import FoundryReads

__all__ = [
    "Contour",
    "ContourResult",
    "FakeFoundry",
    "Faults",
    "Job",
    "Runtime",
    "advance_watermark",
    "bind_handle",
    "capture_logs",
    "fake_process",
    "partitions_of",
    "publish_at",
]

C = TypeVar("C", bound=Connector)
_PREVIEW = {"preview": "true"}
H = TypeVar("H", bound=Handle)


def bind_handle(
    handle: H,
    env: Environment,
    client: FoundryClient,
    *,
    ref: ResourceRef | None = None,
    connector_name: str = "test",
    log: BoundLogger | None = None,
) -> H:
    """A bound copy of a declared handle, as a connector would make it: use a handle without a Connector.

    Bound to `env.ref(handle.alias)`, or to `ref` (e.g. a resource the job did not declare, to see it refused).
    Limits: nothing is opened (call `await handle.open()` for a stream output or input), nothing is closed for
    you, and no dead-letter output is wired to a stream output's rejections (`on_rejected` stays None).
    """
    binding = Binding(
        alias=handle.alias,
        ref=ref or ref_of(handle, env),
        client=client,
        runtime=env.runtime,
        log=log or structlog.get_logger(),
        connector_name=connector_name,
    )
    return handle.bind(binding)


@dataclass
class Job:
    """A job declared on the fake: its scoped token, alias map and the environment a container gets."""

    foundry: FakeFoundry
    rid: str
    token: str
    alias_map: dict[str, Any]
    environ: dict[str, str]
    #: The connector `running` started last, and its task (done once it stopped or failed).
    connector: Connector | None = None
    task: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def running(
        self, cls: type[C], *, extra_env: Mapping[str, str] | None = None, timeout_s: float = 30
    ) -> AsyncIterator[C]:
        """Run `cls` in this event loop for the body of the `with`; then stop it gracefully.

        Leaving the block stops the connector (flush, commit) and re-raises anything it failed with; while it
        runs, `job.task` is its task and every wait of `job.foundry` fails at once with its exception if it dies.
        Limits: no signal handlers, no progress line and no exit codes (that is `connector run`; run it as a
        process with `job.environ` to test those), and the fake shares the test's event loop and CPU.
        """
        env = load_environment({**self.environ, **(extra_env or {})})
        async with FoundryClient(env) as client:
            connector = cls(env, client)
            task = asyncio.create_task(Driver(connector).serve(), name=f"connector {cls.__name__}")
            self.connector, self.task = connector, task
            self.foundry.watch(task)
            try:
                yield connector
            finally:
                connector.stop()
                await asyncio.wait_for(task, timeout_s)

    async def provenance(self) -> dict[str, Any]:
        return await self.foundry.provenance(self.rid)

    async def committed_offsets(self, alias: str) -> dict[str, int]:
        """`{partition: next offset}` committed for the stream input `alias` by the connector `running` started
        last: what a restart resumes from. Empty before its subscriber exists (the connector has not opened it).
        """
        if self.connector is None:
            raise AssertionError("no connector has run in this job yet: use `async with job.running(Cls)`")
        handle = next((h for h in Driver(self.connector).inputs if h.alias == alias), None)
        if not isinstance(handle, StreamInput):
            raise AssertionError(f"{type(self.connector).__name__} declares no stream input {alias!r}")
        status, body = await self.foundry.request(
            "GET",
            self.foundry.stream_path(handle.rid, f"/subscribers/{quote(handle.subscriber_id, safe='')}/getReadPosition",
                                     branch=handle.branch),
            params=_PREVIEW,
        )  # fmt: skip
        return {str(p): int(o) for p, o in body.items()} if status == 200 and body else {}


class FakeFoundry(FoundryReads):
    """A fake Foundry for tests, with admin helpers: create resources and jobs, publish, read back, wait."""

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int = 0,
        url: str | None = None,
        admin_token: str | None = None,
        session: aiohttp.ClientSession | None = None,
        poll_hold_s: float = 20.0,
        sync_timeout_s: float = 30.0,
    ) -> None:
        """In-process fake under `state_dir`; or, with `url` and `admin_token`, one already running.

        `session`: an HTTP session to use (then usable without `async with`, and not closed by it).
        `poll_hold_s` / `sync_timeout_s`: how long an empty function-mode job poll is held open, and how long
        Contour's sync execute waits for a result (shorten them to test time-outs).
        """
        self.state_dir = Path(state_dir)
        self.server = (
            None
            if url
            else FakeServer(
                self.state_dir / "fake-state", port=port, poll_hold_s=poll_hold_s, sync_timeout_s=sync_timeout_s
            )
        )
        self._url = url
        self._admin_token = admin_token
        self._session = session  # no default headers: every call says who it is
        self._owns_session = session is None
        self._jobs = 0
        self._watched: list[asyncio.Task[Any]] = []

    @property
    def url(self) -> str:
        return self.server.url if self.server is not None else str(self._url)

    async def __aenter__(self) -> FakeFoundry:
        if self.server is not None:
            await self.server.start()
            self._admin_token = self.server.admin_token
        if self._owns_session:
            self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        if self.server is not None:
            await self.server.stop()

    async def restart(self) -> None:
        """Stop and start the fake on the same port and state: a durability test's crash."""
        assert self.server is not None, "only an in-process fake can be restarted"
        await self.server.restart()

    @property
    def admin_token(self) -> str:
        """The fake's admin token: every resource, every job, the `/_fake` admin API."""
        assert self._admin_token is not None, "use `async with FakeFoundry(...)`"
        return self._admin_token

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session (no default headers), for requests `call` and `request` cannot express."""
        assert self._session is not None, "use `async with FakeFoundry(...)`"
        return self._session

    async def request(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        """Any call to `<url><path>` as `token` (the admin when None); `(status, JSON, bytes or None)`.

        Never raises on an error status, so a test can assert on refusals. `headers=` are added last, so
        they may replace the Authorization header (or blank it, to call without one).
        """
        headers = {"Authorization": f"Bearer {token or self.admin_token}", **kwargs.pop("headers", {})}
        async with self.session.request(method, f"{self.url}{path}", headers=headers, **kwargs) as resp:
            raw = await resp.read()
            if not raw:
                return resp.status, None
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, raw

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call as the admin that must succeed: the parsed JSON (or bytes); AssertionError on a 4xx/5xx."""
        async with self.session.request(method, f"{self.url}{path}", headers=self.admin_headers, **kwargs) as resp:
            if resp.status >= 400:
                raise AssertionError(f"{method} {path} -> {resp.status}: {await resp.text()}")
            return await resp.json() if resp.content_type == "application/json" else await resp.read()

    async def create_stream(
        self,
        name: str,
        model: type[BaseModel] | None = None,
        *,
        partitions: int = 1,
        branch: str = "master",
        schema: dict[str, Any] | None = None,
    ) -> str:
        """A stream whose schema is derived from `model` (or given); returns its rid."""
        body: dict[str, Any] = {"type": "stream", "name": name, "partitions": partitions, "branch": branch}
        if schema is not None or model is not None:
            body["schema"] = schema if schema is not None else stream_schema(model)  # type: ignore[arg-type]
        created = await self.call("POST", "/_fake/resources", json=body)
        return str(created["rid"])

    async def create_dataset(self, name: str) -> str:
        created = await self.call("POST", "/_fake/resources", json={"type": "dataset", "name": name})
        return str(created["rid"])

    async def create_media_set(self, name: str, *, transactional: bool = False) -> str:
        body = {"type": "media_set", "name": name, "transactional": transactional}
        created = await self.call("POST", "/_fake/resources", json=body)
        return str(created["rid"])

    async def job(self, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> Job:
        """Declare a job; writes its token and alias map files and returns the container environment."""
        created = await self.call("POST", "/_fake/jobs", json={"inputs": dict(inputs), "outputs": dict(outputs)})
        return self.job_files(created)

    def job_files(self, created: Mapping[str, Any]) -> Job:
        """A declared job (`POST /_fake/jobs`'s answer) as a `Job`, its token and alias map written to files.

        The token file holds the token as is (no trailing newline), as Foundry mounts it.
        """
        self._jobs += 1
        folder = self.state_dir / f"job-{self._jobs}"
        folder.mkdir(parents=True, exist_ok=True)
        token_file, alias_file = folder / "token", folder / "resource-alias-map.json"
        token_file.write_text(created["token"])
        alias_file.write_text(json.dumps(created["resourceAliasMap"]))
        environ = {
            "BUILD2_TOKEN": str(token_file),
            "RESOURCE_ALIAS_MAP": str(alias_file),
            "FOUNDRY_URL": self.url,
            "CONNECTOR_LOG_FORMAT": "json",
            "CONNECTOR_POLL_INTERVAL_MS": "50",
            "CONNECTOR_PUBLISH_LINGER_MS": "5",
        }
        return Job(self, created["jobRid"], created["token"], created["resourceAliasMap"], environ)

    async def runtime(
        self,
        runtime_id: str,
        *,
        deployed_app_rid: str | None = None,
        branch: str | None = None,
        max_concurrent_tasks: int = 1,
    ) -> Runtime:
        """Create (or reset) a function-mode runtime, bound to `deployed_app_rid` when given.

        `runtime.environ` is what a function-mode container gets (https, the fake's CA, a token file).
        """
        body: dict[str, Any] = {"runtimeId": runtime_id, "maxConcurrentTasks": max_concurrent_tasks}
        if deployed_app_rid:
            body |= {"deployedAppRid": deployed_app_rid, "branch": branch}
        created = await self.call("POST", "/_emulate/foundry/compute-modules/runtimes", json=body)
        return Runtime(self, runtime_id, created["moduleAuthToken"], deployed_app_rid, created["environment"])

    @property
    def faults(self) -> Faults:
        """Fault injection on this fake: statuses, latency, dropped connections, garbage, token expiry, resets."""
        return Faults(self)

    @property
    def contour(self) -> Contour:
        """Contour's job API as the admin; `Contour(foundry, token=await foundry.user_token(...))` as a user."""
        return Contour(self)

    async def user_token(self, user_id: str) -> str:
        """A bearer token for `user_id`, accepted by Contour (jobs record it as their caller)."""
        created = await self.call("POST", "/_fake/users", json={"userId": user_id})
        return str(created["token"])

    async def provenance(self, job_rid: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("GET", "/_fake/provenance", params={"jobRid": job_rid})
        return result


@asynccontextmanager
async def fake_process(state_dir: Path, *, port: int = 0, echo: bool = False) -> AsyncIterator[FakeFoundry]:
    """`fake-stream-proxy serve` as a separate process (as a user would run it), with admin helpers.

    Use it when the fake must not share the test's event loop or CPU: demos, benchmarks, soak tests.
    Stopped with SIGTERM on exit. Limits: `restart()` is for in-process fakes only, and only the fake's first
    output line is read (it prints its URL, then logs nothing on stdout).
    """
    state_dir = Path(state_dir)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fake_stream_proxy",
        "serve",
        "--port",
        str(port),
        "--https-port",
        "0",
        "--state-dir",
        str(state_dir / "fake"),
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,  # a terminal's Ctrl-C reaches its caller, which stops it last, in order
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        match = re.search(r"http://[\w.]+:\d+", line)
        if match is None:
            raise RuntimeError(f"fake-stream-proxy did not start: {line.strip()!r}")
        if echo:
            print(line.strip(), flush=True)
        token = (state_dir / "fake" / "admin-token").read_text().strip()
        async with FakeFoundry(state_dir, url=match.group(0), admin_token=token) as foundry:
            yield foundry
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
