"""Windowed state split among workers (CONNECTOR_WORKERS): each worker keeps the windows of its partitions and
replays only their share of the shared changelog, so the state survives any change of worker count; an input
that is not keyed, or a key changed from two workers' partitions, stops the start-up in one line.

In-process: each worker is a connector run with CONNECTOR_WORKERS / CONNECTOR_WORKER_INDEX set, as `connector
run` sets them for its worker processes (`test_state_workers_kill_e2e.py` runs and SIGKILLs those).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path

import pytest

from connectors.sensor_minutes import Reading, SensorMinutes, SensorMinutesReread
from framework import ConfigError, stream_schema
from framework.testing import FakeFoundry, Job, advance_watermark

from .state_support import GRACE_S, T0, WATERMARK_SENSOR, as_minute, readings, reference, sensor_streams
from .stream_support import committed, total, wait_until
from .test_state_e2e import minutes_of

pytestmark = pytest.mark.timeout(120)


class SiteReading(Reading):
    site: str


KEYED = {**stream_schema(Reading), "keyFieldNames": ["sensor"]}


def workers_env(workers: int, index: int | None) -> dict[str, str]:
    env = {"MINUTES_GRACE_S": str(GRACE_S), "CONNECTOR_READ_BATCH_SIZE": "97"}
    if index is not None:
        env |= {"CONNECTOR_WORKERS": str(workers), "CONNECTOR_WORKER_INDEX": str(index)}
    return env


async def run_until_committed(
    foundry: FakeFoundry, job: Job, workers: int, cls: type[SensorMinutes] = SensorMinutes
) -> list[SensorMinutes]:
    """Run `workers` connectors as the workers of one replica until the input is committed (re-reading: until
    each read its partitions to the end); stop them cleanly."""
    indexes: list[int | None] = [None] if workers == 1 else list(range(workers))
    jobs = [dataclasses.replace(job) for _ in indexes]  # one Job each: `running` keeps the connector it started
    async with contextlib.AsyncExitStack() as stack:
        connectors = [
            await stack.enter_async_context(j.running(cls, extra_env=workers_env(workers, i)))
            for j, i in zip(jobs, indexes, strict=True)
        ]

        async def done() -> bool:
            if any(j.task is not None and j.task.done() for j in jobs):
                return True  # one stopped (failed): leaving the block re-raises why
            if cls is SensorMinutes:
                return await committed(foundry, connectors[0].readings)
            ends = await foundry.end_offsets(connectors[0].readings.rid)
            read = {p: n for c in connectors for p, n in c.readings.cursor.items()}
            return read == ends

        await wait_until(done, "every reading committed", timeout_s=60)
    return connectors


async def test_windows_survive_one_two_three_and_back_to_one_worker(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await sensor_streams(foundry, partitions=4, schema=KEYED)
        rows = readings(4000, sensors=10)
        expected = {k: as_minute(k, acc) for k, acc in reference(rows).items()}
        parts = [rows[:1000], rows[1000:2000], rows[2000:3000], rows[3000:]]
        shares: list[list[SensorMinutes]] = []
        for workers, part in zip([1, 2, 3], parts[:3], strict=True):
            await foundry.publish(s.readings, part)
            shares.append(await run_until_committed(foundry, s.job, workers))

        # Three workers: each holds only the windows of its partitions' sensors, and replayed only their entries.
        three = shares[2]
        by_partition = {r["value"]["sensor"]: int(r["partition"]) for r in await foundry.records(s.readings)}
        for index, worker in enumerate(three):
            keys = {key for key, _ in worker.windows.open_windows()}
            assert keys and all(by_partition[k] % 3 == index for k in keys), (index, keys)
            assert all(int(slot.rpartition("/")[2]) % 3 == index for slot in worker.windows.applied())
        assert sum(w.windows.restored for w in three) == 2000  # the changelog so far, split without overlap
        assert len({k for w in three for k in w.windows.open_windows()}) == sum(w.windows.size for w in three)

        # Back to one worker: it replays every worker's entries and finishes every minute.
        await foundry.publish(s.readings, parts[3])
        await advance_watermark(foundry, s.readings, {"sensor": WATERMARK_SENSOR, "value": 0.0}, T0 + 7200)
        (one,) = await run_until_committed(foundry, s.job, 1)
        assert one.windows.restored == 3000 and one.windows.late == 0
        assert await total(foundry, s.state) == len(rows) + await watermark_readings(foundry, s.readings)

        mine = await minutes_of(foundry, s.minutes)
        assert {(v["sensor"], v["start_ms"]): v for v in mine} == expected
        assert len(mine) == len(expected)  # clean stops: no minute published twice


async def test_rereading_windows_survive_two_three_and_one_worker(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await sensor_streams(foundry, partitions=4, schema=KEYED)
        rows = readings(3000, sensors=10)
        expected = {k: as_minute(k, acc) for k, acc in reference(rows).items()}
        for workers, part in zip([2, 3], [rows[:1500], rows[1500:]], strict=True):
            await foundry.publish(s.readings, part)
            share = await run_until_committed(foundry, s.job, workers, SensorMinutesReread)
            assert all(w.windows.size > 0 for w in share)
        assert await total(foundry, s.state) == 0  # nothing checkpointed: the input is re-read
        await advance_watermark(foundry, s.readings, {"sensor": WATERMARK_SENSOR, "value": 0.0}, T0 + 7200)
        (one,) = await run_until_committed(foundry, s.job, 1, SensorMinutesReread)
        assert one.windows.late == 0

        mine = await minutes_of(foundry, s.minutes)
        assert {(v["sensor"], v["start_ms"]) for v in mine} == set(expected)
        assert [v for v in mine if v != expected[(v["sensor"], v["start_ms"])]] == []  # repeated only whole
        print(f"re-reading: {len(mine)} minutes published for {len(expected)}")


async def watermark_readings(foundry: FakeFoundry, rid: str) -> int:
    return sum(1 for r in await foundry.records(rid) if r["value"]["sensor"].startswith(WATERMARK_SENSOR))


async def test_workers_refuse_an_input_without_key_fields(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await sensor_streams(foundry, partitions=3)
        with pytest.raises(ConfigError) as caught:
            async with s.job.running(SensorMinutes, extra_env=workers_env(2, 0)):
                await asyncio.sleep(5)
        message = str(caught.value)
        assert message.startswith("CONNECTOR_WORKERS=2: state 'state' is split among workers by partition")
        assert "input 'readings' has no key fields" in message and "\n" not in message


async def test_a_key_changed_from_two_workers_partitions_stops_the_start(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        # Keyed, but by the site, not the sensor: one sensor's readings land on both partitions.
        s = await sensor_streams(
            foundry, partitions=2, schema={**stream_schema(SiteReading), "keyFieldNames": ["site"]}
        )
        await foundry.publish(
            s.readings, [{**r, "site": f"site{i % 5}"} for i, r in enumerate(readings(200, sensors=2))]
        )
        await run_until_committed(foundry, s.job, 1)
        with pytest.raises(ConfigError) as caught:
            async with s.job.running(SensorMinutes, extra_env=workers_env(2, 1)):
                await asyncio.sleep(5)
        message = str(caught.value)
        assert "state 'state' has key 's0" in message and ("partitions 0 and 1" in message or "1 and 0" in message)
        assert "key the input stream by the state's key, or run one worker" in message
