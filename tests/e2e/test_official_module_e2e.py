"""Palantir's official `foundry-compute-modules` client against the fake, as a real process over https.

The module registers its schemas, reports its restart, long-polls for jobs and posts results; applications
call it through Contour (sync execute, async submit/status/result), including a streaming and a failing one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fake_stream_proxy import FakeServer

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
RUNTIMES = "/_emulate/foundry/compute-modules/runtimes"
CONTOUR = "/contour-backend-multiplexer/api/module-group-multiplexer"
APP = "ri.foundry.main.deployed-app.official"


@asynccontextmanager
async def module_process(tmp_path: Path, environment: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    log = (tmp_path / "module.log").open("wb")
    env = {**os.environ, **environment, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "tests" / "e2e" / "official_module.py"), env=env, stdout=log, stderr=log
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()
        log.close()


async def wait_connected(session: aiohttp.ClientSession, fake: FakeServer, runtime_id: str, job_id: str) -> None:
    for _ in range(200):
        async with session.get(f"{fake.url}{RUNTIMES}/{runtime_id}/jobs/{job_id}") as resp:
            body = await resp.json()
        if body["runtime"]["connected"] and body["schemas"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the module never connected")


async def test_official_client_sync_async_streaming_failing(tmp_path: Path) -> None:
    async with FakeServer(tmp_path / "fake", poll_hold_s=2, sync_timeout_s=20) as fake:
        admin = {"Authorization": f"Bearer {fake.admin_token}"}
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{fake.url}{RUNTIMES}", json={"runtimeId": "official", "deployedAppRid": APP}
            ) as resp:
                assert resp.status == 200
                created = await resp.json()
            environment: dict[str, str] = created["environment"]
            assert environment["RUNTIME_PORT"] == str(fake.https_port)
            token_file = Path(environment["MODULE_AUTH_TOKEN"])
            assert token_file.read_text() == created["moduleAuthToken"]  # noqa: ASYNC240 - as is, no newline

            async with module_process(tmp_path, environment) as process:

                async def execute(query_type: str, query: dict[str, Any]) -> tuple[int, bytes]:
                    body = {"deployedAppRid": APP, "queryType": query_type, "query": query}
                    url = f"{fake.url}{CONTOUR}/compute-modules/jobs/execute"
                    async with session.post(url, json=body, headers=admin) as resp:
                        return resp.status, await resp.read()

                assert await execute("add", {"x": 2, "y": 40}) == (200, b"42")
                assert await execute("count", {"n": 3}) == (200, b'{"i": 0}{"i": 1}{"i": 2}')
                status, failed = await execute("fail", {"n": 7})
                assert status == 500
                assert json.loads(failed) == {"error": "job_failed", "error_description": "Compute module job failed."}

                # Async: submit, poll the status, fetch the result.
                body = {"deployedAppRid": APP, "queryType": "whoami", "query": {"n": 1}}
                async with session.post(f"{fake.url}{CONTOUR}/deployed-apps/jobs", json=body, headers=admin) as resp:
                    submitted = await resp.json()
                assert submitted["status"] == {"type": "queued", "queued": {"queueInfo": "NORMAL_OPERATION"}}
                assert json.loads(submitted["jobHandle"])["jobId"] == submitted["id"]
                for _ in range(200):
                    async with session.get(f"{fake.url}{CONTOUR}/jobs/{submitted['id']}/status", headers=admin) as r:
                        job_status = await r.json()
                    if job_status["type"] in ("succeeded", "failed"):
                        break
                    await asyncio.sleep(0.05)
                assert job_status["type"] == "succeeded" and "multiplexerJobTiming" in job_status["succeeded"]
                async with session.put(
                    f"{fake.url}{CONTOUR}/jobs/result/v2", json={"jobHandle": submitted["jobHandle"]}, headers=admin
                ) as resp:
                    assert json.loads(await resp.read()) == submitted["id"]
                assert process.returncode is None  # a failing job never stopped the module

            async with session.get(f"{fake.url}{RUNTIMES}/official/jobs/{submitted['id']}") as resp:
                inspected = await resp.json()
            assert inspected["job"]["status"] == "succeeded" and inspected["runtime"]["connected"] is True
            specs = {s["functionName"]: s for s in inspected["schemas"]}
            assert set(specs) == {"add", "count", "fail", "whoami"}
            assert specs["add"]["inputs"][0] == {
                "name": "x",
                "required": True,
                "constraints": [],
                "dataType": {"type": "integer", "integer": {}},
            }
