"""Function mode end to end: the framework's own module against the fake's runtime and Contour APIs, over https.

In-process through `framework.testing` (Runtime.running, foundry.contour) and as a `connector run` process; and
the fake's own rules: module tokens, resets, sync time-outs, unbound apps, restart notifications.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from connectors.geo import GeoFunctions
from framework import JobContext, function
from framework.testing import Contour, FakeFoundry

from .connector_process import start_cli

pytestmark = pytest.mark.timeout(60)

APP = "ri.foundry.main.deployed-app.geo"
RUNTIMES = "/_emulate/foundry/compute-modules/runtimes"
PARIS, LONDON, BERLIN = {"lat": 48.8566, "lon": 2.3522}, {"lat": 51.5074, "lon": -0.1278}, {"lat": 52.52, "lon": 13.405}


async def test_framework_module_sync_async_streaming_and_bad_jobs(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path, poll_hold_s=1) as foundry:
        runtime = await foundry.runtime("geo", deployed_app_rid=APP)
        async with runtime.running(GeoFunctions):
            state = await runtime.state()
            assert state["runtime"]["connected"] is True
            assert {s["functionName"] for s in state["schemas"]} == {"distance", "legs", "midpoint"}

            distance = await foundry.contour.execute(APP, "distance", {"a": PARIS, "b": LONDON})
            assert distance.ok and 340 < distance.value["km"] < 345
            legs = await foundry.contour.execute(APP, "legs", {"points": [PARIS, LONDON, BERLIN]})
            assert [leg["index"] for leg in legs.values] == [0, 1] and legs.body.startswith(b'{"index":0,')
            middle = await foundry.contour.execute(APP, "midpoint", {"a": PARIS, "b": BERLIN})  # a plain def
            assert middle.value == {"lat": pytest.approx(50.6883), "lon": pytest.approx(7.8786)}

            bad = await foundry.contour.execute(APP, "distance", {"a": PARIS, "b": {"lat": 123, "lon": 0}})
            assert (bad.status, bad.error) == (500, "job_failed")
            unknown = await foundry.contour.execute(APP, "teleport", {})
            assert unknown.error == "job_failed"

            # Async, as a named user: the job records its caller; failures are readable in the job record.
            as_user = Contour(foundry, token=await foundry.user_token("ada"))
            job_id = await as_user.submit(APP, "distance", {"a": LONDON, "b": BERLIN})
            assert (await as_user.wait(job_id))["type"] == "succeeded"
            assert 925 < (await as_user.result(job_id)).value["km"] < 935
            bad_id = await as_user.submit(APP, "distance", {"a": LONDON})
            assert await as_user.wait(bad_id) == {"type": "failed", "failed": {"message": "Compute module job failed."}}
            assert (await as_user.result(bad_id)).error == "job_not_ready"
            record = await foundry.call("GET", f"{RUNTIMES}/geo/jobs/{bad_id}")
            assert json.loads(record["job"]["result_body_utf8"]) == {
                "error": "query for 'distance' is invalid: field 'b': Field required"
            }
            assert (await runtime.state())["jobs"] == {"succeeded": 4, "failed": 3}

        events = (await foundry.call("GET", "/_fake/provenance"))["events"]
        jobs = [e for e in events if e["operation"] == "computeModuleJob"]
        assert len(jobs) == 7 and {e["caller"] for e in jobs} == {"admin", "ada"}
        assert {e["source"] for e in jobs} == {"contour-sync", "contour-async"}


async def test_connector_run_serves_a_function_module_as_a_process(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path, poll_hold_s=1) as foundry:
        runtime = await foundry.runtime("geo-process", deployed_app_rid=APP, max_concurrent_tasks=2)
        environ = {**runtime.environ, "CONNECTOR_LOG_FORMAT": "sls"}
        process = await start_cli(tmp_path, "geo", "run", "connectors.geo:GeoFunctions", environ=environ)
        try:
            for _ in range(300):
                if (await runtime.state())["schemas"]:
                    break
                await asyncio.sleep(0.02)
            calls = [foundry.contour.execute(APP, "distance", {"a": PARIS, "b": LONDON}) for _ in range(4)]
            assert all(r.ok for r in await asyncio.gather(*calls))
        finally:
            assert await process.stop(signal.SIGTERM) == 0, process.output()
        lines = [json.loads(line) for line in process.output().splitlines()]
        assert all(line["type"] == "service.1" for line in lines)
        assert runtime.token not in process.output()
        messages = [line["message"] for line in lines]
        assert "function module ready" in messages and messages.count("job finished") == 4 and "stopped" in messages


async def test_module_token_reset_timeout_and_unbound_app(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path, poll_hold_s=0.2, sync_timeout_s=0.5) as foundry:
        runtime = await foundry.runtime("rules", deployed_app_rid=APP)
        job_path = f"{RUNTIMES}/rules/job"
        status, body = await foundry.request("GET", job_path, headers={"Module-Auth-Token": "wrong"})
        assert status == 401
        assert body == {
            "error": "invalid_module_auth_token",
            "error_description": "The Module-Auth-Token header is invalid.",
        }
        status, _ = await foundry.request("GET", job_path, headers={"Module-Auth-Token": runtime.token})
        assert status == 204  # nothing queued: the empty poll was held, then answered

        # No module polls: a sync call times out and leaves its job queued.
        timed_out = await foundry.contour.execute(APP, "distance", {})
        assert timed_out.status == 504 and timed_out.error == "job_timeout"
        assert (await runtime.state())["jobs"] == {"queued": 1}
        unbound = await foundry.contour.execute("ri.foundry.main.deployed-app.nobody", "distance", {})
        assert unbound.status == 404 and unbound.value == {
            "error": "not_found",
            "error_description": "No active compute-module runtime is bound to 'ri.foundry.main.deployed-app.nobody'.",
        }

        # A reset clears jobs and schemas, fails a waiting caller at once, and the old token stops working.
        waiting = asyncio.create_task(foundry.contour.execute(APP, "distance", {}))
        await asyncio.sleep(0.1)
        reset = await foundry.runtime("rules", deployed_app_rid=APP)
        failed = await asyncio.wait_for(waiting, 5)
        assert failed.error == "job_failed" and "reset" in failed.value["error_description"]
        assert reset.token != runtime.token and (await reset.state())["jobs"] == {}
        status, _ = await foundry.request("GET", job_path, headers={"Module-Auth-Token": runtime.token})
        assert status == 401

        # A restart notification fails the jobs that were running on the runtime and names them.
        job_id = await foundry.contour.submit(APP, "distance", {})
        status, polled = await foundry.request("GET", job_path, headers={"Module-Auth-Token": reset.token})
        assert status == 200 and polled["computeModuleJobV1"]["jobId"] == job_id
        restart = f"{RUNTIMES}/rules/restart-notification"
        status, removed = await foundry.request("POST", restart, headers={"Module-Auth-Token": reset.token})
        assert (status, removed) == (200, [job_id])
        assert (await foundry.contour.status(job_id))["type"] == "failed"


class Slow(GeoFunctions):
    @function
    async def nap(self, ctx: JobContext, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return f"slept {seconds}"


async def test_stopping_finishes_running_jobs_and_runs_them_concurrently(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path, poll_hold_s=1) as foundry:
        runtime = await foundry.runtime("slow", deployed_app_rid=APP, max_concurrent_tasks=3)
        async with runtime.running(Slow):
            ids = [await foundry.contour.submit(APP, "nap", {"seconds": 0.6}) for _ in range(3)]
            for _ in range(100):  # all three running at once: MAX_CONCURRENT_TASKS=3
                if (await runtime.state())["jobs"].get("running") == 3:
                    break
                await asyncio.sleep(0.02)
            assert (await runtime.state())["jobs"] == {"running": 3}
        # Leaving the block stopped the module: the running jobs were finished, not abandoned.
        assert [(await foundry.contour.result(i)).value for i in ids] == ["slept 0.6"] * 3
