"""framework.testing as a user's test suite uses it: the `foundry` fixture, waits that fail fast, reads back."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import framework.testing
from connectors.doubler import Doubled, Doubler, Number
from connectors.stream_archiver import Event, StreamArchiver
from framework import Connector, DeadLetter, MediaSetOutput, StreamInput, StreamOutput
from framework._env.environment import load_environment
from framework._http import FoundryClient
from framework.testing import FakeFoundry, bind_handle

pytestmark = pytest.mark.timeout(90)


def docstring_example() -> str:
    doc = framework.testing.__doc__ or ""
    match = re.search(r"A complete test:\n\n(.*?)\n\nOutside pytest", doc, re.S)
    assert match, "framework.testing's docstring lost its example"
    return textwrap.dedent(match.group(1))


async def test_the_module_docstring_example_runs(foundry: FakeFoundry) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(docstring_example(), framework.testing.__file__, "exec"), namespace)
    await namespace["test_shouter"](foundry)


class Broken(Connector):
    numbers = StreamInput[Number]("numbers")
    doubled = StreamOutput[Doubled]("doubled")

    async def setup(self) -> None:
        raise RuntimeError("the source refused our credentials")

    async def transform(self, record: Number) -> Doubled:
        return Doubled(twice_x=record.x)


async def _doubler_job(foundry: FakeFoundry) -> tuple[framework.testing.Job, str, str]:
    numbers = await foundry.create_stream("numbers", Number)
    doubled = await foundry.create_stream("doubled", Doubled)
    dead = await foundry.create_stream("dead_letters", DeadLetter)
    outputs = {"doubled": doubled, "dead_letters": dead}
    return await foundry.job(inputs={"numbers": numbers}, outputs=outputs), numbers, doubled


async def test_a_connector_that_dies_at_start_up_fails_the_wait_with_its_own_error(foundry: FakeFoundry) -> None:
    job, _, doubled = await _doubler_job(foundry)
    with pytest.raises(RuntimeError, match="refused our credentials"):  # not a timeout: the test's limit is 90 s
        async with job.running(Broken):
            await foundry.wait_for_records(doubled, 1, timeout_s=3600)
    assert job.task is not None and job.task.done()
    with pytest.raises(RuntimeError, match="refused our credentials"):
        await foundry.wait_until(lambda: False, timeout_s=3600)  # every wait of this fake, not only stream waits


async def test_wait_until_returns_the_value_or_names_what_it_waited_for(foundry: FakeFoundry) -> None:
    assert await foundry.wait_until(lambda: [1]) == [1]

    async def ready() -> str:
        return "yes"

    assert await foundry.wait_until(ready) == "yes"
    with pytest.raises(AssertionError, match="the dataset still false after 0s"):
        await foundry.wait_until(lambda: None, timeout_s=0, what="the dataset")


async def test_committed_offsets_follow_the_subscriber(foundry: FakeFoundry) -> None:
    job, numbers, doubled = await _doubler_job(foundry)
    with pytest.raises(AssertionError, match="no connector has run"):
        await job.committed_offsets("numbers")
    await foundry.publish(numbers, [{"x": i} for i in range(7)])
    async with job.running(Doubler):
        await foundry.wait_for_records(doubled, 7)
    assert await job.committed_offsets("numbers") == {"0": 7}
    with pytest.raises(AssertionError, match="no stream input 'doubled'"):
        await job.committed_offsets("doubled")


async def test_read_a_dataset_back_as_arrow_and_rows(foundry: FakeFoundry) -> None:
    events = await foundry.create_stream("events", Event)
    archive = await foundry.create_dataset("archive")
    assert (await foundry.read_dataset(archive)).num_rows == 0
    job = await foundry.job(inputs={"events": events}, outputs={"archive": archive})
    when = datetime(2026, 1, 2, tzinfo=UTC).isoformat()
    await foundry.publish(events, [{"id": i, "name": f"e{i}", "value": i / 2, "ts": when} for i in range(3)])
    async with job.running(StreamArchiver, extra_env={"ARCHIVER_FLUSH_INTERVAL_S": "0.1"}):

        async def archived() -> bool:
            return sum((await job.committed_offsets("events")).values()) == 3

        await foundry.wait_until(archived)
    table = await foundry.read_dataset(archive)
    assert table.num_rows == 3 and "stream_offset" in table.column_names
    rows = await foundry.dataset_rows(archive)
    assert sorted(r["name"] for r in rows) == ["e0", "e1", "e2"]


async def test_read_a_media_item_back(foundry: FakeFoundry, tmp_path: Path) -> None:
    media = await foundry.create_media_set("scans")
    job = await foundry.job(inputs={}, outputs={"scans": media})
    env = load_environment(job.environ)
    async with FoundryClient(env) as client:
        out = bind_handle(MediaSetOutput("scans"), env, client)
        await out.upload("docs/a.txt", b"hello")
    assert await foundry.read_media(media, "docs/a.txt") == b"hello"
    assert await foundry.read_media(media, "docs/missing.txt") is None
