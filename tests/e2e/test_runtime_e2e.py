"""The runtime around a connector: the progress line, bounded shutdown, binary records, `latest` read mode."""

from __future__ import annotations

import asyncio
import base64
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from connectors.doubler import Doubled, Doubler, Number
from framework import Connector, DeadLetter, StreamInput, StreamOutput
from framework.testing import FakeFoundry

from .connector_process import ConnectorProcess, start_cli

pytestmark = pytest.mark.timeout(60)

NULLABLE_X = {"fields": [{"name": "x", "schema": {"nullable": True, "dataType": {"type": "long"}}}]}


async def _doubler_job(foundry: FakeFoundry) -> tuple[Any, str, str]:
    numbers = await foundry.create_stream("numbers", schema=NULLABLE_X, partitions=2)
    doubled = await foundry.create_stream("doubled", Doubled)
    dead = await foundry.create_stream("dead_letters", DeadLetter)
    job = await foundry.job(inputs={"numbers": numbers}, outputs={"doubled": doubled, "dead_letters": dead})
    return job, numbers, doubled


async def _wait_for_event(proc: ConnectorProcess, accept: Any, timeout_s: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event in proc.events():
            if accept(event):
                return event
        await asyncio.sleep(0.1)
    raise AssertionError(f"no matching event in:\n{proc.output()[-3000:]}")


async def test_progress_line_reports_counts_rates_and_lag(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        job, numbers, _ = await _doubler_job(foundry)
        await foundry.publish(numbers, [{"x": i} for i in range(300)] + [{"x": None}])
        proc = await start_cli(
            tmp_path,
            "progress",
            "run",
            "connectors.doubler:Doubler",
            environ={**job.environ, "CONNECTOR_PROGRESS_INTERVAL_S": "0.2"},
        )
        try:
            event = await _wait_for_event(
                proc,
                lambda e: (
                    e.get("event") == "progress"
                    and e["inputs"]["numbers"]["records"] == 300
                    and e["inputs"]["numbers"]["lag"] == 0
                ),
            )
        finally:
            assert await proc.stop() == 0
    assert event["inputs"]["numbers"]["invalid"] == 1
    assert event["outputs"]["doubled"]["records"] == 300
    assert event["outputs"]["dead_letters"]["records"] == 1
    assert {"per_s", "lag"} <= set(event["inputs"]["numbers"])
    assert job.token not in proc.output()


async def test_shutdown_is_bounded_when_the_connector_ignores_it(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        ticks = await foundry.create_stream("ticks")
        job = await foundry.job(inputs={}, outputs={"ticks": ticks})
        proc = await start_cli(
            tmp_path,
            "stubborn",
            "run",
            "tests.e2e.stubborn:Stubborn",
            environ={**job.environ, "CONNECTOR_SHUTDOWN_TIMEOUT_S": "0.5"},
        )
        deadline = time.monotonic() + 20
        while "STARTED" not in proc.output():
            assert time.monotonic() < deadline, proc.output()
            await asyncio.sleep(0.05)
        started = time.monotonic()
        code = await proc.stop(signal.SIGTERM, timeout_s=10)
        took = time.monotonic() - started
        assert len(await foundry.records(ticks)) == 1
    assert code == 1, proc.output()
    assert took < 5, f"shutdown took {took:.1f}s with a 0.5s timeout"
    assert any(e.get("event", "").startswith("shutdown timed out") for e in proc.events()), proc.output()


class Blob(BaseModel):
    data: bytes


class BinaryPublisher(Connector):
    blobs = StreamOutput[Blob]("blobs")

    async def run(self) -> None:
        for payload in (b"\x00\x01binary", b"\xff" * 1000):
            await self.blobs.publish_binary(payload)


async def test_publish_binary_record_round_trip(tmp_path: Path) -> None:
    schema = {"fields": [{"name": "data", "schema": {"nullable": False, "dataType": {"type": "binary"}}}]}
    async with FakeFoundry(tmp_path) as foundry:
        blobs = await foundry.create_stream("blobs", schema=schema)
        job = await foundry.job(inputs={}, outputs={"blobs": blobs})
        async with job.running(BinaryPublisher) as connector:
            found = await foundry.wait_for_records(blobs, 2)
        assert [base64.b64decode(r["value"]["data"]) for r in found] == [b"\x00\x01binary", b"\xff" * 1000]
        assert connector.blobs.metrics.records == 2
        events = (await job.provenance())["events"]
        assert [e["operation"] for e in events if e["direction"] == "write"] == ["publishBinaryRecord"] * 2


async def test_latest_read_mode_skips_history(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        job, numbers, doubled = await _doubler_job(foundry)
        await foundry.publish(numbers, [{"x": 1000 + i} for i in range(50)])  # history: skipped
        async with job.running(Doubler, extra_env={"CONNECTOR_READ_MODE": "latest"}) as connector:
            deadline = time.monotonic() + 10
            while not connector.numbers.cursor:  # opened: positioned at the end offsets
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            await foundry.publish(numbers, [{"x": i} for i in range(20)])
            found = await foundry.wait_for_records(doubled, 20)
            await asyncio.sleep(0.2)  # nothing more may arrive
        values = sorted(r["value"]["twice_x"] for r in await foundry.records(doubled))
        assert values == [2 * i for i in range(20)], values
        assert len(found) == 20


class HalfBadBatch(Doubler):
    """Every third output record breaks the output model: those are dead-lettered, the rest published."""

    transform = None  # type: ignore[assignment]  # this subclass is batch-mode

    async def transform_batch(self, records: list[Any]) -> list[dict[str, Any]]:
        return [{"twice_x": 2 * r.x if r.x % 3 else f"bad-{r.x}"} for r in records]


async def test_batch_transform_dead_letters_invalid_output_records(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        job, numbers, doubled = await _doubler_job(foundry)
        dead = job.alias_map["dead_letters"]["rid"]
        await foundry.publish(numbers, [{"x": i} for i in range(30)])
        async with job.running(HalfBadBatch) as connector:
            await foundry.wait_for_records(doubled, 20)
            letters = await foundry.wait_for_records(dead, 10)
            deadline = time.monotonic() + 10
            while sum(connector.numbers.committed.values()) < 30:  # the whole input is committed
                assert time.monotonic() < deadline, connector.numbers.committed
                await asyncio.sleep(0.02)
        assert sorted(r["value"]["twice_x"] for r in await foundry.records(doubled)) == [
            2 * i for i in range(30) if i % 3
        ]
        assert sorted(r["value"]["raw"] for r in letters) == sorted(
            f'{{"twice_x": "bad-{i}"}}' for i in range(30) if i % 3 == 0
        )
        assert {r["value"]["source"] for r in letters} == {"doubled"}
        assert all("transform output for 'doubled' is invalid" in r["value"]["error"] for r in letters)


class Word(BaseModel):
    word: str


class Tagged(BaseModel):
    source: str
    value: str


class Merger(Connector):
    """Two inputs, one output: records from each input are told apart by their model."""

    numbers = StreamInput[Number]("numbers")
    words = StreamInput[Word]("words")
    merged = StreamOutput[Tagged]("merged")

    async def transform(self, record: Number | Word) -> Tagged:
        if isinstance(record, Number):
            return Tagged(source="numbers", value=str(record.x))
        return Tagged(source="words", value=record.word)


async def test_two_inputs_are_read_and_committed_independently(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        numbers = await foundry.create_stream("numbers", Number, partitions=2)
        words = await foundry.create_stream("words", Word)
        merged = await foundry.create_stream("merged", Tagged)
        job = await foundry.job(inputs={"numbers": numbers, "words": words}, outputs={"merged": merged})
        await foundry.publish(numbers, [{"x": i} for i in range(40)])
        await foundry.publish(words, [{"word": w} for w in ("alpha", "beta", "gamma")])
        async with job.running(Merger) as connector:
            found = await foundry.wait_for_records(merged, 43)
        assert sorted(r["value"]["value"] for r in found if r["value"]["source"] == "numbers") == sorted(
            str(i) for i in range(40)
        )
        assert [r["value"]["value"] for r in found if r["value"]["source"] == "words"] == ["alpha", "beta", "gamma"]
        assert sum(connector.numbers.committed.values()) == 40
        assert connector.words.committed == {"0": 3}
        assert connector.numbers.subscriber_id != connector.words.subscriber_id
