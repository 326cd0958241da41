"""A stream reset (a new, empty view of the same stream) under a running connector.

Before: after an input reset the reader kept its pre-reset offsets, read-ahead re-read uncommitted records and
every new record was published three times, silently. Now the reader notices the new view, logs it once and
goes on from the new view's start; an output reset is logged and publishing goes on into the new view.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from connectors.doubler import Doubler
from framework.testing import FakeFoundry, capture_logs

from .stream_support import doubler_streams, wait_committed, wait_until

pytestmark = pytest.mark.timeout(60)


async def reset(foundry: FakeFoundry, rid: str) -> None:
    await foundry.call("POST", "/api/v2/streams/datasets/" + rid + "/streams/master/reset", params={"preview": "true"})


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


async def test_an_input_reset_is_noticed_once_and_new_records_are_published_once(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=2)
        await foundry.publish(s.numbers, [{"x": i} for i in range(300)])
        with capture_logs() as logs:
            async with s.job.running(Doubler, extra_env={"CONNECTOR_READ_BATCH_SIZE": "20"}) as connector:
                await foundry.wait_for_records(s.doubled, 300)
                await wait_committed(foundry, connector.numbers)
                await reset(foundry, s.numbers)
                await foundry.publish(s.numbers, [{"x": i} for i in range(1000, 1200)])
                await foundry.wait_for_records(s.doubled, 500)
                await wait_committed(foundry, connector.numbers)

        out = Counter(r["value"]["twice_x"] for r in await foundry.records(s.doubled))
        assert out == Counter([2 * i for i in range(300)] + [2 * i for i in range(1000, 1200)])
        (noticed,) = events(logs, "input stream was reset")
        assert noticed["alias"] == "numbers" and noticed["view_rid"] != noticed["previous_view_rid"]
        assert connector.numbers.committed == await foundry.end_offsets(s.numbers)


async def test_a_reset_while_batches_are_in_flight_loses_and_repeats_nothing_of_the_new_view(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=1)
        await foundry.publish(s.numbers, [{"x": i} for i in range(2000)])
        extra = {"CONNECTOR_READ_BATCH_SIZE": "10", "CONNECTOR_PUBLISH_LINGER_MS": "50"}
        async with s.job.running(Doubler, extra_env=extra) as connector:
            await wait_until(lambda: _has(foundry, s.doubled, 100), "some records out")
            await reset(foundry, s.numbers)  # batches of the old view are in flight now
            await foundry.publish(s.numbers, [{"x": i} for i in range(10_000, 10_100)])
            await wait_committed(foundry, connector.numbers)
            await wait_until(lambda: _has(foundry, s.doubled, 1), "anything")

        new = [r["value"]["twice_x"] for r in await foundry.records(s.doubled) if r["value"]["twice_x"] >= 20_000]
        assert Counter(new) == Counter(2 * i for i in range(10_000, 10_100))


async def _has(foundry: FakeFoundry, rid: str, count: int) -> bool:
    return sum((await foundry.end_offsets(rid)).values()) >= count


async def test_an_output_reset_is_logged_and_publishing_goes_on_into_the_new_view(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=1)
        await foundry.publish(s.numbers, [{"x": i} for i in range(100)])
        with capture_logs() as logs:
            async with s.job.running(Doubler) as connector:
                await foundry.wait_for_records(s.doubled, 100)
                await wait_committed(foundry, connector.numbers)
                await reset(foundry, s.doubled)
                await foundry.publish(s.numbers, [{"x": i} for i in range(100, 150)])
                await foundry.wait_for_records(s.doubled, 50)
                await wait_committed(foundry, connector.numbers)

        out = sorted(r["value"]["twice_x"] for r in await foundry.records(s.doubled))
        assert out == [2 * i for i in range(100, 150)]
        (noticed,) = events(logs, "output stream was reset")
        assert noticed["alias"] == "doubled"
