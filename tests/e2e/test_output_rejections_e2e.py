"""A record the output stream refuses (413 RecordTooLarge) is dead-lettered alone; the rest is published.

Before: the whole batch failed with 413 and the connector stopped, and every restart failed the same way.
The fake refuses a record over 1 MiB (its stream store's per-record limit), as Foundry does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from connectors.doubler import Number
from framework import Connector, DeadLetter, DeadLetterOutput, StreamInput, StreamOutput
from framework.testing import FakeFoundry

from .stream_support import read_position, wait_committed

pytestmark = pytest.mark.timeout(60)

HUGE = {3, 7}  # inputs whose output is over the fake's 1 MiB record limit


class Padded(BaseModel):
    x: int
    pad: str


class Padder(Connector):
    numbers = StreamInput[Number]("numbers")
    padded = StreamOutput[Padded]("padded")
    dead_letters = DeadLetterOutput("dead_letters")

    async def transform(self, record: Number) -> Padded:
        return Padded(x=record.x, pad="p" * (2 * 1024 * 1024 if record.x in HUGE else 10))


async def test_an_oversize_output_record_is_dead_lettered_with_its_input_position_and_the_rest_published(
    tmp_path: Path,
) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        numbers = await foundry.create_stream("numbers", Number, partitions=2)
        padded = await foundry.create_stream("padded", Padded)
        dead = await foundry.create_stream("dead_letters", DeadLetter)
        job = await foundry.job(inputs={"numbers": numbers}, outputs={"padded": padded, "dead_letters": dead})
        await foundry.publish(numbers, [{"x": i} for i in range(10)])
        positions = {r["value"]["x"]: (r["partition"], r["offset"]) for r in await foundry.records(numbers)}

        async with job.running(Padder, extra_env={"CONNECTOR_PUBLISH_LINGER_MS": "200"}) as connector:
            letters = await foundry.wait_for_records(dead, 2)
            await foundry.wait_for_records(padded, 8)
            await wait_committed(foundry, connector.numbers)

        assert sorted(r["value"]["x"] for r in await foundry.records(padded)) == [i for i in range(10) if i not in HUGE]
        assert len(letters) == 2
        for letter in letters:
            value = letter["value"]
            assert "413" in value["error"] and "RecordTooLarge" in value["error"], value["error"]
            assert value["source"] == "numbers"
            x = int(value["raw"].split('"x": ', 1)[1].split(",", 1)[0])
            assert x in HUGE
            assert (value["partition"], value["offset"]) == positions[x]
            assert "cut:" in value["raw"]  # the raw record is bounded, so the dead letter itself fits
        assert await read_position(foundry, connector.numbers) == await foundry.end_offsets(numbers)
        assert connector.padded.metrics.invalid == 2
