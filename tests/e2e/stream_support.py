"""Helpers shared by the stream end-to-end tests: the doubler's streams and job, positions, bounded waits."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from connectors.doubler import Doubled, Number
from framework import DeadLetter, StreamInput
from framework.testing import FakeFoundry, Job

PREVIEW = {"preview": "true"}
# The upstream schema lets x be null; the doubler's model does not: {"x": None} is a record it must reject.
NULLABLE_X: dict[str, Any] = {"fields": [{"name": "x", "schema": {"nullable": True, "dataType": {"type": "long"}}}]}


@dataclass
class DoublerStreams:
    numbers: str
    doubled: str
    dead: str
    job: Job


async def doubler_streams(
    foundry: FakeFoundry, *, partitions: int = 3, numbers_schema: dict[str, Any] | None = None
) -> DoublerStreams:
    """`numbers` (input), `doubled` and `dead_letters` (outputs) and a job declaring them."""
    if numbers_schema is None:
        numbers = await foundry.create_stream("numbers", Number, partitions=partitions)
    else:
        numbers = await foundry.create_stream("numbers", schema=numbers_schema, partitions=partitions)
    doubled = await foundry.create_stream("doubled", Doubled)
    dead = await foundry.create_stream("dead_letters", DeadLetter)
    job = await foundry.job(inputs={"numbers": numbers}, outputs={"doubled": doubled, "dead_letters": dead})
    return DoublerStreams(numbers, doubled, dead, job)


hs_path = FakeFoundry.stream_path


async def end_offsets(foundry: FakeFoundry, rid: str) -> dict[str, int]:
    return await foundry.end_offsets(rid)


async def read_position(foundry: FakeFoundry, source: StreamInput[Any]) -> dict[str, int]:
    """The input's committed read position on the server, as its subscriber (what a restart resumes from)."""
    return await foundry.read_position(source.rid, source.subscriber_id)


async def wait_until(
    check: Callable[[], Awaitable[bool]], what: str, *, timeout_s: float = 20, every_s: float = 0.02
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(every_s)


async def committed(foundry: FakeFoundry, source: StreamInput[Any]) -> bool:
    """Whether the input's subscriber has committed everything written to its stream (False before it exists)."""
    try:
        return await read_position(foundry, source) == await end_offsets(foundry, source.rid)
    except AssertionError:  # the subscriber does not exist yet
        return False


async def wait_committed(foundry: FakeFoundry, source: StreamInput[Any], *, timeout_s: float = 20) -> None:
    """Until the input's subscriber has committed everything written to its stream."""

    async def done() -> bool:
        return await committed(foundry, source)

    await wait_until(done, f"{source.subscriber_id} to commit the end of {source.alias}", timeout_s=timeout_s)


async def total(foundry: FakeFoundry, rid: str) -> int:
    return sum((await end_offsets(foundry, rid)).values())


def coverage(values: list[int], expected: set[int]) -> tuple[set[int], int, set[int]]:
    """(missing, duplicates, unexpected) of `values` against `expected`."""
    counts = Counter(values)
    missing = expected - set(counts)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    return missing, duplicates, set(counts) - expected
