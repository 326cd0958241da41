"""CONNECTOR_WORKERS=2 on a 4-partition stream: the workers split the partitions, SIGTERM stops them all cleanly
(everything read is committed), and a restart finishes the stream with nothing lost and nothing read twice."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from connectors.doubler import Doubler
from framework import FoundryClient, StreamInput, load_environment
from framework.testing import FakeFoundry, Job

from .connector_process import ConnectorProcess, start_cli
from .stream_support import coverage, doubler_streams, end_offsets, read_position, total, wait_committed, wait_until

pytestmark = pytest.mark.timeout(90)

COUNT = 12_000
WORKERS = {"CONNECTOR_WORKERS": "2", "CONNECTOR_READ_BATCH_SIZE": "200", "CONNECTOR_PUBLISH_BATCH_SIZE": "200"}


async def workers(tmp_path: Path, name: str, job: Job) -> ConnectorProcess:
    return await start_cli(tmp_path, name, "run", "connectors.doubler:Doubler", environ={**job.environ, **WORKERS})


async def input_of(job: Job) -> StreamInput[Any]:
    env = load_environment(job.environ)
    async with FoundryClient(env) as client:
        return Doubler(env, client).numbers


def shares(proc: ConnectorProcess) -> dict[int, list[str]]:
    """The partitions each worker said it reads."""
    return {e["worker"]: e["partitions"] for e in proc.events() if e.get("event") == "worker reads partitions"}


async def test_two_workers_split_partitions_stop_on_sigterm_and_lose_nothing(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=4)
        await foundry.publish(s.numbers, [{"x": i} for i in range(COUNT)])
        numbers = await input_of(s.job)

        first = await workers(tmp_path, "first", s.job)
        try:

            async def some_output() -> bool:
                return await total(foundry, s.doubled) >= 1000

            await wait_until(some_output, "the first outputs", timeout_s=30, every_s=0.01)
        except BaseException:
            await first.stop(signal.SIGKILL)
            raise
        assert await first.stop(signal.SIGTERM, timeout_s=30) == 0, first.output()
        split = shares(first)
        assert split == {0: ["0", "2"], 1: ["1", "3"]}, first.output()
        events = first.events()
        assert sum(e.get("event") == "stopping" and e.get("signal") == "SIGTERM" for e in events) == 2
        assert any(e.get("event") == "workers stopped" and e.get("exit_code") == 0 for e in events)

        # Every worker committed everything it read before it exited: reads add up to commits and outputs.
        committed = await read_position(foundry, numbers)
        written = await total(foundry, s.doubled)
        assert written < COUNT, "SIGTERM came after the end: not mid-stream"
        reads = [e for e in (await s.job.provenance())["events"] if e["rid"] == s.numbers]
        assert sum(e["recordCount"] for e in reads) == sum(committed.values()) == written

        second = await workers(tmp_path, "second", s.job)
        try:
            await wait_committed(foundry, numbers, timeout_s=40)
        finally:
            assert await second.stop() == 0, second.output()
        assert shares(second) == split
        values = [int(r["value"]["twice_x"]) for r in await foundry.records(s.doubled)]
        missing, duplicates, _ = coverage(values, {2 * i for i in range(COUNT)})
        assert not missing and duplicates == 0, f"{len(missing)} missing, {duplicates} duplicates"
        assert await read_position(foundry, numbers) == await end_offsets(foundry, s.numbers)
        # No partition was read by two workers: no record was read twice across both runs.
        reads = [e for e in (await s.job.provenance())["events"] if e["rid"] == s.numbers]
        assert sum(e["recordCount"] for e in reads) == COUNT
