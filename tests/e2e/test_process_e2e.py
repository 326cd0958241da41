"""`connector run` / `connector check` as real processes against the in-process fake: kill -9, SIGTERM, check, help.

The fake serves from this test's event loop, so the connector processes are asyncio subprocesses and every
wait is an awaited, bounded poll. Their output goes to files (a full pipe would block them).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.doubler import Doubler
from framework import FoundryClient, StreamInput, load_environment
from framework.testing import FakeFoundry, Job

from .connector_process import ConnectorProcess, start_cli
from .stream_support import coverage, doubler_streams, end_offsets, read_position, total, wait_committed, wait_until

pytestmark = pytest.mark.timeout(90)

SPEC = "connectors.doubler:Doubler"
# Small batches so that a kill or SIGTERM lands mid-stream.
SMALL_BATCHES = {"CONNECTOR_READ_BATCH_SIZE": "200", "CONNECTOR_PUBLISH_BATCH_SIZE": "200"}
COUNT = 12_000


async def running_proc(tmp_path: Path, name: str, job: Job, **extra: str) -> ConnectorProcess:
    return await start_cli(tmp_path, name, "run", SPEC, environ={**job.environ, **SMALL_BATCHES, **extra})


async def input_of(job: Job) -> StreamInput[Any]:
    """The doubler's `numbers` input bound as the process binds it: its rid and subscriber id."""
    env = load_environment(job.environ)
    async with FoundryClient(env) as client:
        return Doubler(env, client).numbers


async def test_sigkill_mid_stream_then_restart_loses_nothing(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=3)
        await foundry.publish(s.numbers, [{"x": i} for i in range(COUNT)])
        numbers = await input_of(s.job)

        first = await running_proc(tmp_path, "first", s.job)
        try:

            async def some_output() -> bool:
                return await total(foundry, s.doubled) >= 1000

            await wait_until(some_output, "the first outputs", timeout_s=30, every_s=0.01)
        finally:
            assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
        await asyncio.sleep(0.2)  # let the fake finish a request the kill cut off
        written_at_kill = await total(foundry, s.doubled)
        committed_at_kill = sum((await read_position(foundry, numbers)).values())
        assert 0 < written_at_kill < COUNT, f"the kill was not mid-stream ({written_at_kill} written)"
        assert committed_at_kill <= written_at_kill  # commits never run ahead of acknowledged outputs

        second = await running_proc(tmp_path, "second", s.job)
        try:
            await wait_committed(foundry, numbers, timeout_s=40)
        finally:
            assert await second.stop() == 0, second.output()

        values = [int(r["value"]["twice_x"]) for r in await foundry.records(s.doubled)]
        missing, duplicates, unexpected = coverage(values, {2 * i for i in range(COUNT)})
        report = (
            f"{len(missing)} missing, {duplicates} duplicates; {written_at_kill} written and "
            f"{committed_at_kill} committed at the kill"
        )
        assert not missing and not unexpected, report
        # Exactly the outputs of records read but not committed before the kill are written twice.
        assert duplicates == written_at_kill - committed_at_kill, report
        opened = [e for e in second.events() if e.get("event") == "input opened"]
        assert sum(opened[0]["position"].values()) == committed_at_kill, report


async def test_sigterm_commits_everything_read_and_exits_zero(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=3)
        await foundry.publish(s.numbers, [{"x": i} for i in range(COUNT)])
        numbers = await input_of(s.job)

        first = await running_proc(tmp_path, "first", s.job, CONNECTOR_SHUTDOWN_TIMEOUT_S="10")
        try:

            async def some_output() -> bool:
                return await total(foundry, s.doubled) >= 1000

            await wait_until(some_output, "the first outputs", timeout_s=30, every_s=0.01)
        except BaseException:
            await first.stop(signal.SIGKILL)
            raise
        signalled = time.monotonic()
        code = await first.stop(signal.SIGTERM, timeout_s=15)
        stop_s = time.monotonic() - signalled
        assert code == 0, first.output()
        assert stop_s < 10, f"took {stop_s:.1f}s to stop, over CONNECTOR_SHUTDOWN_TIMEOUT_S"

        committed = await read_position(foundry, numbers)
        written = await total(foundry, s.doubled)
        assert written < COUNT, "SIGTERM came after the end: not mid-stream"
        # Everything read was processed, acknowledged and committed before the exit.
        reads = [e for e in (await s.job.provenance())["events"] if e["rid"] == s.numbers]
        assert sum(e["recordCount"] for e in reads) == sum(committed.values()) == written
        events = first.events()
        assert any(e.get("event") == "stopping" and e.get("signal") == "SIGTERM" for e in events)
        (stopped,) = [e for e in events if e.get("event") == "stopped"]
        assert stopped["inputs"] == {"numbers": written}

        second = await running_proc(tmp_path, "second", s.job)
        try:
            await wait_committed(foundry, numbers, timeout_s=40)
        finally:
            assert await second.stop() == 0, second.output()
        (stopped,) = [e for e in second.events() if e.get("event") == "stopped"]
        assert stopped["inputs"] == {"numbers": COUNT - written}  # nothing old processed again
        values = [int(r["value"]["twice_x"]) for r in await foundry.records(s.doubled)]
        missing, duplicates, _ = coverage(values, {2 * i for i in range(COUNT)})
        assert not missing and duplicates == 0, f"{len(missing)} missing, {duplicates} duplicates"
        assert await read_position(foundry, numbers) == await end_offsets(foundry, s.numbers)


async def test_check_passes_on_a_good_job_and_names_the_unreachable_alias(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry)
        other = await foundry.create_stream("someone-elses", schema={"fields": []})
        # The job's alias map, with `doubled` pointing at a stream its token is not scoped to.
        bad_map = tmp_path / "bad-aliases.json"
        bad_map.write_text(json.dumps({**s.job.alias_map, "doubled": {"rid": other, "branch": None}}))
        good = await start_cli(tmp_path, "good", "check", SPEC, environ=s.job.environ)
        bad = await start_cli(
            tmp_path, "bad", "check", SPEC, environ={**s.job.environ, "RESOURCE_ALIAS_MAP": str(bad_map)}
        )
        codes = await asyncio.wait_for(asyncio.gather(good.process.wait(), bad.process.wait()), 30)

        assert codes[0] == 0, good.output()
        assert {e["alias"] for e in good.events() if e.get("event") == "check ok"} == {
            "numbers",
            "doubled",
            "dead_letters",
        }
        assert codes[1] != 0, bad.output()
        errors = [line for line in bad.output().splitlines() if '"level": "error"' in line]
        assert len(errors) == 2 and json.loads(errors[1])["event"] == "check failed: 1 of 3", bad.output()
        error = json.loads(errors[0])
        assert error["alias"] == "doubled" and error["rid"] == other
        assert "StreamNotFound" in error["error"]  # Foundry does not reveal a stream the token may not see
        assert s.job.token not in good.output() + bad.output()
        # check moves no data
        assert await total(foundry, s.doubled) == 0
        assert not [e for e in (await s.job.provenance())["events"] if e["direction"] == "write"]


async def test_help_mentions_the_environment(tmp_path: Path) -> None:
    procs = [
        await start_cli(tmp_path, f"help-{i}", *args, environ={})
        for i, args in enumerate([("--help",), ("run", "--help")])
    ]
    codes = await asyncio.wait_for(asyncio.gather(*(p.process.wait() for p in procs)), 30)
    for proc, code in zip(procs, codes, strict=True):
        assert code == 0, proc.output()
        assert "BUILD2_TOKEN" in proc.output() and "RESOURCE_ALIAS_MAP" in proc.output()
    assert "package.module:ClassName" in procs[1].output()
