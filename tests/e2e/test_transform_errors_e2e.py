"""An exception raised by a transform: stop (the default) or, opted in, dead-letter the input and go on.

Before: a transform that raised on one record stopped the connector, and every restart read the same batch,
re-published its outputs and raised again, forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

import pytest

from connectors.doubler import Doubled, Number
from framework import (
    ConfigError,
    Connector,
    DeadLetterOutput,
    FoundryClient,
    StreamInput,
    StreamOutput,
    load_environment,
)
from framework._driver import Driver
from framework.testing import FakeFoundry

from .stream_support import doubler_streams, wait_committed

pytestmark = pytest.mark.timeout(60)

UNLUCKY = {13, 77}
DEAD_LETTER = {"CONNECTOR_ON_TRANSFORM_ERROR": "dead_letter"}


class Fragile(Connector):
    numbers = StreamInput[Number]("numbers")
    doubled = StreamOutput[Doubled]("doubled")
    dead_letters = DeadLetterOutput("dead_letters")

    async def transform(self, record: Number) -> Doubled:
        if record.x in UNLUCKY:
            raise ValueError(f"unlucky {record.x}")
        return Doubled(twice_x=2 * record.x)


class FragileBatch(Connector):
    numbers = StreamInput[Number]("numbers")
    doubled = StreamOutput[Doubled]("doubled")
    dead_letters = DeadLetterOutput("dead_letters")

    async def transform_batch(self, records: list[Number]) -> Iterable[Doubled]:
        if any(r.x in UNLUCKY for r in records):
            raise ValueError("unlucky batch")
        return [Doubled(twice_x=2 * r.x) for r in records]


class NoDeadLetters(Connector):
    numbers = StreamInput[Number]("numbers")
    doubled = StreamOutput[Doubled]("doubled")

    async def transform(self, record: Number) -> Doubled:
        return Doubled(twice_x=record.x)


@pytest.mark.parametrize("cls", [Fragile, FragileBatch])
async def test_dead_letter_policy_keeps_the_failing_input_with_its_position_and_goes_on(
    tmp_path: Path, cls: type[Connector]
) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=2)
        await foundry.publish(s.numbers, [{"x": i} for i in range(200)])
        positions = {r["value"]["x"]: (r["partition"], r["offset"]) for r in await foundry.records(s.numbers)}
        async with s.job.running(cls, extra_env=DEAD_LETTER) as connector:
            await foundry.wait_for_records(s.doubled, 198)
            letters = await foundry.wait_for_records(s.dead, 2)
            await wait_committed(foundry, connector.numbers)  # type: ignore[attr-defined]

        out = sorted(r["value"]["twice_x"] for r in await foundry.records(s.doubled))
        assert out == [2 * i for i in range(200) if i not in UNLUCKY]
        by_x = {int(letter["value"]["raw"].split(":")[1].strip(" }")): letter["value"] for letter in letters}
        assert set(by_x) == UNLUCKY
        for x, value in by_x.items():
            assert (value["partition"], value["offset"]) == positions[x]
            assert value["error"].startswith("transform raised ValueError: unlucky"), value["error"]


async def test_the_default_policy_stops_and_commits_nothing_of_that_batch(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=1)
        await foundry.publish(s.numbers, [{"x": i} for i in range(20)])
        env = load_environment(s.job.environ)
        async with FoundryClient(env) as client:
            connector = Fragile(env, client)
            with pytest.raises(ValueError, match="unlucky 13"):
                await asyncio.wait_for(Driver(connector).serve(), 30)
        assert await foundry.records(s.dead) == []
        assert sum(connector.numbers.committed.values()) <= 13


async def test_dead_letter_policy_without_a_dead_letter_output_is_a_config_error(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=1)
        job = await foundry.job(inputs={"numbers": s.numbers}, outputs={"doubled": s.doubled})
        with pytest.raises(ConfigError, match="CONNECTOR_ON_TRANSFORM_ERROR=dead_letter needs a DeadLetterOutput"):
            async with job.running(NoDeadLetters, extra_env=DEAD_LETTER):
                pass
