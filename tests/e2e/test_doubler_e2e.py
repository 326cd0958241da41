"""The doubler and other stream connectors in-process against the fake over 127.0.0.1 (`job.running`).

Correctness, commits, dead letters, restarts of the connector and of the fake, provenance, the three
connector modes, and the getRecords (`earliest`) read mode.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from connectors.doubler import Doubled, Doubler, Number
from framework import Connector, StreamInput, StreamOutput
from framework.testing import FakeFoundry

from .stream_support import (
    NULLABLE_X,
    coverage,
    doubler_streams,
    end_offsets,
    read_position,
    total,
    wait_committed,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


def doubled_values(records: list[dict[str, Any]]) -> list[int]:
    return [int(r["value"]["twice_x"]) for r in records]


async def test_doubles_every_record_of_three_partitions_exactly_once_and_commits(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=3)
        await foundry.publish(s.numbers, [{"x": i} for i in range(2000)])
        ends = await end_offsets(foundry, s.numbers)
        assert len(ends) == 3 and all(n > 0 for n in ends.values()), ends  # really spread over 3 partitions

        async with s.job.running(Doubler) as connector:
            await foundry.wait_for_records(s.doubled, 2000)
            await wait_committed(foundry, connector.numbers)

        out = doubled_values(await foundry.records(s.doubled))
        assert Counter(out) == Counter(2 * i for i in range(2000))
        assert await read_position(foundry, connector.numbers) == ends
        assert connector.numbers.committed == ends
        assert connector.numbers.metrics.records == 2000 and connector.numbers.metrics.invalid == 0
        assert connector.doubled.metrics.records == 2000
        assert await foundry.records(s.dead) == []


async def test_malformed_record_is_dead_lettered_with_its_position_and_processing_goes_on(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=2, numbers_schema=NULLABLE_X)
        await foundry.publish(s.numbers, [{"x": i} for i in range(10)])
        await foundry.publish(s.numbers, [{"x": None}])
        await foundry.publish(s.numbers, [{"x": i} for i in range(10, 20)])
        (bad,) = [r for r in await foundry.records(s.numbers) if r["value"]["x"] is None]

        async with s.job.running(Doubler) as connector:
            await foundry.wait_for_records(s.doubled, 20)
            (letter,) = await foundry.wait_for_records(s.dead, 1)
            await wait_committed(foundry, connector.numbers)

        assert sorted(doubled_values(await foundry.records(s.doubled))) == [2 * i for i in range(20)]
        value = letter["value"]
        assert value["source"] == "numbers"
        assert (value["partition"], value["offset"]) == (bad["partition"], bad["offset"])
        assert json.loads(value["raw"]) == {"x": None}
        assert "x" in value["error"] and value["connector"] == "Doubler"
        assert connector.numbers.metrics.invalid == 1
        assert connector.numbers.metrics.records == 20
        assert len(await foundry.records(s.dead)) == 1
        # The bad record's offset was committed too: a restart does not dead-letter it again.
        assert await read_position(foundry, connector.numbers) == await end_offsets(foundry, s.numbers)


async def test_output_rejected_by_the_stream_schema_is_dead_lettered_and_the_rest_published(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=1)
        # A narrower output stream than the model: twice_x is a 32-bit integer there.
        int32 = {"fields": [{"name": "twice_x", "schema": {"nullable": False, "dataType": {"type": "integer"}}}]}
        narrow = await foundry.create_stream("doubled-int32", schema=int32)
        job = await foundry.job(inputs={"numbers": s.numbers}, outputs={"doubled": narrow, "dead_letters": s.dead})
        big = 2**31  # fits the input's long; 2 * big does not fit the output's integer
        await foundry.publish(s.numbers, [{"x": i} for i in range(50)] + [{"x": big}] + [{"x": 50}])

        async with job.running(Doubler) as connector:
            await foundry.wait_for_records(narrow, 51)
            (letter,) = await foundry.wait_for_records(s.dead, 1)
            await wait_committed(foundry, connector.numbers)

        assert doubled_values(await foundry.records(narrow)) == [2 * i for i in range(51)]  # order kept
        value = letter["value"]
        # Named by the input position that produced it.
        assert (value["source"], value["offset"]) == ("numbers", 50)
        assert json.loads(value["raw"]) == {"twice_x": 2 * big}
        assert "RecordDoesNotMatchStreamSchema" in value["error"]
        assert connector.doubled.metrics.invalid == 1 and connector.doubled.metrics.records == 51


async def test_restart_resumes_after_the_last_commit(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=3)
        await foundry.publish(s.numbers, [{"x": i} for i in range(300)])
        async with s.job.running(Doubler) as first:
            await foundry.wait_for_records(s.doubled, 300)
            await wait_committed(foundry, first.numbers)
        assert first.numbers.metrics.records == 300
        position = await read_position(foundry, first.numbers)

        await foundry.publish(s.numbers, [{"x": i} for i in range(300, 500)])
        async with s.job.running(Doubler) as second:
            await foundry.wait_for_records(s.doubled, 500)
            await wait_committed(foundry, second.numbers)
        # The same subscriber: it opened at the first run's committed position.
        assert second.numbers.subscriber_id == first.numbers.subscriber_id
        assert sum(position.values()) == 300 and position == first.numbers.committed

        assert second.numbers.metrics.records == 200  # only the new records
        assert Counter(doubled_values(await foundry.records(s.doubled))) == Counter(2 * i for i in range(500))


async def test_fake_restart_mid_stream_loses_nothing(tmp_path: Path) -> None:
    count = 6000
    retry_env = {
        "CONNECTOR_RETRY_MAX_ATTEMPTS": "30",
        "CONNECTOR_RETRY_INITIAL_BACKOFF_S": "0.02",
        "CONNECTOR_RETRY_MAX_BACKOFF_S": "0.3",
        "CONNECTOR_READ_BATCH_SIZE": "100",
        "CONNECTOR_PUBLISH_BATCH_SIZE": "100",
    }
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=3)
        await foundry.publish(s.numbers, [{"x": i} for i in range(count)])
        async with s.job.running(Doubler, extra_env=retry_env) as connector:

            async def some_output() -> bool:
                return await total(foundry, s.doubled) >= 300

            await wait_until(some_output, "the first outputs", every_s=0.005)
            await foundry.restart()
            written_at_restart = await total(foundry, s.doubled)
            assert written_at_restart < count, "the restart came after the end: not mid-stream"
            await wait_committed(foundry, connector.numbers, timeout_s=30)

        values = doubled_values(await foundry.records(s.doubled))
        missing, duplicates, unexpected = coverage(values, {2 * i for i in range(count)})
        assert not missing, f"{len(missing)} records lost (duplicates: {duplicates}), e.g. {sorted(missing)[:5]}"
        assert not unexpected
        assert connector.client.metrics.connection_errors > 0, "the connector never saw the restart"
        # At-least-once: duplicates are allowed, but only from publishes retried across the restart (one
        # output batch of 100 in flight at a time), not from reading the input again.
        assert duplicates <= 200, f"{duplicates} duplicates"


async def test_provenance_lists_aliases_and_counts_add_up(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=3)
        await foundry.publish(s.numbers, [{"x": i} for i in range(600)])
        async with s.job.running(Doubler) as connector:
            await foundry.wait_for_records(s.doubled, 600)
            await wait_committed(foundry, connector.numbers)

        prov = await s.job.provenance()
        assert prov["jobRid"] == s.job.rid
        assert prov["inputs"] == {"numbers": {"rid": s.numbers, "branch": "master"}}
        assert prov["outputs"] == {
            "doubled": {"rid": s.doubled, "branch": "master"},
            "dead_letters": {"rid": s.dead, "branch": "master"},
        }
        events = prov["events"]
        reads = [e for e in events if e["rid"] == s.numbers]
        writes = [e for e in events if e["rid"] == s.doubled]
        assert reads and all(e["direction"] == "read" for e in reads)
        assert writes and all(e["direction"] == "write" for e in writes)
        assert {e["operation"] for e in reads} <= {"readRecords", "getRecords"}
        assert {e["operation"] for e in writes} == {"publishRecords"}
        assert all(e["jobRid"] == s.job.rid for e in events)
        # A clean run reads every input record exactly once and writes one output per input.
        assert sum(e["recordCount"] for e in reads) == 600
        assert sum(e["recordCount"] for e in writes) == 600 == await total(foundry, s.doubled)
        assert not [e for e in events if e["rid"] == s.dead]
        # The write events' offsets cover the output stream exactly.
        written = sorted(o for e in writes for first, last in e["offsets"].values() for o in range(first, last + 1))
        assert written == list(range(600))


class Picky(Connector):
    """Fails on x == 500, like a transform with a bug."""

    name = "Doubler"  # the same subscriber as the doubler: the fixed connector resumes where this one committed
    numbers = StreamInput[Number]("numbers")
    doubled = StreamOutput[Doubled]("doubled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failed = asyncio.Event()

    async def transform(self, record: Number) -> Doubled:
        if record.x == 500:
            self.failed.set()
            raise RuntimeError("transform bug")
        return Doubled(twice_x=2 * record.x)


async def test_a_failing_transform_stops_the_connector_and_its_batch_is_read_again(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=1)
        await foundry.publish(s.numbers, [{"x": i} for i in range(1000)])
        env = {"CONNECTOR_READ_BATCH_SIZE": "100"}
        with pytest.raises(RuntimeError, match="transform bug"):
            async with s.job.running(Picky, extra_env=env) as picky:
                await asyncio.wait_for(picky.failed.wait(), 20)
        position = await read_position(foundry, picky.numbers)
        assert position["0"] <= 500  # the failing record's batch was not committed

        async with s.job.running(Doubler, extra_env=env) as fixed:
            await wait_committed(foundry, fixed.numbers)
        values = doubled_values(await foundry.records(s.doubled))
        missing, duplicates, _ = coverage(values, {2 * i for i in range(1000)})
        assert not missing, f"{len(missing)} missing"
        assert fixed.numbers.metrics.records == 1000 - position["0"]
        assert duplicates == len(values) - 1000


class Splitter(Connector):
    """Even x -> two records (2x and 2x + 1), odd x -> nothing."""

    numbers = StreamInput[Number]("numbers")
    doubled = StreamOutput[Doubled]("doubled")

    async def transform(self, record: Number) -> list[Doubled] | None:
        if record.x % 2:
            return None
        return [Doubled(twice_x=2 * record.x), Doubled(twice_x=2 * record.x + 1)]


class BatchDoubler(Connector):
    numbers = StreamInput[Number]("numbers")
    doubled = StreamOutput[Doubled]("doubled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_sizes: list[int] = []

    async def transform_batch(self, records: list[Number]) -> Iterable[dict[str, int]]:
        self.batch_sizes.append(len(records))
        return ({"twice_x": 2 * r.x} for r in records)


class Source(Connector):
    """A free-running source: publishes 250 records, then idles until stopped."""

    doubled = StreamOutput[Doubled]("doubled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.published = asyncio.Event()
        self.wakeups = 0

    async def run(self) -> None:
        for i in range(250):
            await self.doubled.publish(Doubled(twice_x=i))
        self.published.set()
        while await self.sleep(30):
            self.wakeups += 1


async def test_transform_returning_a_list_publishes_all(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=2)
        await foundry.publish(s.numbers, [{"x": i} for i in range(400)])
        async with s.job.running(Splitter) as connector:
            await foundry.wait_for_records(s.doubled, 400)
            await wait_committed(foundry, connector.numbers)
        expected = Counter(v for i in range(0, 400, 2) for v in (2 * i, 2 * i + 1))
        assert Counter(doubled_values(await foundry.records(s.doubled))) == expected


async def test_transform_batch_mode(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=3)
        await foundry.publish(s.numbers, [{"x": i} for i in range(1000)])
        async with s.job.running(BatchDoubler, extra_env={"CONNECTOR_READ_BATCH_SIZE": "150"}) as connector:
            await foundry.wait_for_records(s.doubled, 1000)
            await wait_committed(foundry, connector.numbers)
        assert Counter(doubled_values(await foundry.records(s.doubled))) == Counter(2 * i for i in range(1000))
        assert sum(connector.batch_sizes) == 1000
        assert len(connector.batch_sizes) > 1 and max(connector.batch_sizes) <= 150


async def test_run_mode_stops_promptly_and_its_records_are_acknowledged(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        doubled = await foundry.create_stream("doubled", Doubled)
        job = await foundry.job(inputs={}, outputs={"doubled": doubled})
        # Records linger in the buffer (batch bigger than 250, 10 s linger) until stop() flushes them.
        slow = {"CONNECTOR_PUBLISH_LINGER_MS": "10000", "CONNECTOR_PUBLISH_BATCH_SIZE": "1000"}
        async with job.running(Source, extra_env=slow) as connector:
            await asyncio.wait_for(connector.published.wait(), 10)
            await asyncio.sleep(0.1)
            assert await total(foundry, doubled) == 0  # still lingering: batched, not sent one by one
            assert connector.doubled.pending == 250
            stopping_at = time.monotonic()
        stop_s = time.monotonic() - stopping_at

        assert stop_s < 3, f"stop took {stop_s:.1f}s"
        assert connector.wakeups == 0
        assert connector.doubled.pending == 0 and connector.doubled.metrics.records == 250
        # All acknowledged, once each and in publish order (one partition).
        assert doubled_values(await foundry.records(doubled)) == list(range(250))


async def test_earliest_read_mode_uses_get_records(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=3)
        await foundry.publish(s.numbers, [{"x": i} for i in range(1000)])
        env = {"CONNECTOR_READ_MODE": "earliest", "CONNECTOR_READ_BATCH_SIZE": "120"}
        async with s.job.running(Doubler, extra_env=env) as connector:
            await foundry.wait_for_records(s.doubled, 1000)

            async def all_committed() -> bool:
                return connector.numbers.committed == await end_offsets(foundry, s.numbers)

            await wait_until(all_committed, "in-memory commits to reach the end")
        assert Counter(doubled_values(await foundry.records(s.doubled))) == Counter(2 * i for i in range(1000))
        reads = [e for e in (await s.job.provenance())["events"] if e["rid"] == s.numbers]
        assert {e["operation"] for e in reads} == {"getRecords"}
        assert sum(e["recordCount"] for e in reads) == 1000
        # No subscriber was made: the position lived in memory only.
        with pytest.raises(AssertionError, match="SubscriberNotFound"):
            await read_position(foundry, connector.numbers)
