"""A 200 answer whose body is not JSON (garbage from a proxy, a body cut short) is a retryable fault.

Before: `_http` returned the raw bytes and the stream code crashed with
`AttributeError: 'bytes' object has no attribute 'get'`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.doubler import Doubler
from framework.testing import FakeFoundry, capture_logs

from .stream_support import doubler_streams, wait_committed

pytestmark = pytest.mark.timeout(60)

FAST = {"CONNECTOR_RETRY_INITIAL_BACKOFF_S": "0.01", "CONNECTOR_RETRY_MAX_BACKOFF_S": "0.05"}


@pytest.mark.parametrize("garbage", ["not-json", "truncated"])
async def test_garbage_2xx_bodies_are_retried_with_a_clear_line_and_nothing_is_lost(
    tmp_path: Path, garbage: str
) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=2)
        await foundry.publish(s.numbers, [{"x": i} for i in range(200)])
        for path in ("*/readRecords", "*/getRecords", "*/commitOffsets", "*/getReadPosition"):
            await foundry.faults.add({"garbage": garbage}, path=path, job=s.job.rid, next=2)
        await foundry.faults.add({"garbage": garbage}, path=f"/api/v2/streams/datasets/{s.doubled}/streams/master",
                                 job=s.job.rid, next=1)  # fmt: skip
        with capture_logs() as logs:
            async with s.job.running(Doubler, extra_env=FAST) as connector:
                await foundry.wait_for_records(s.doubled, 200)
                await wait_committed(foundry, connector.numbers)

        assert {r["value"]["twice_x"] for r in await foundry.records(s.doubled)} == {2 * i for i in range(200)}
        fired = sum(rule["fired"] for rule in await foundry.faults.list())
        assert fired >= 5
        lines = [e for e in logs if e["event"] == "Foundry answered with a malformed body; retrying"]
        assert len(lines) == fired
        assert all("not valid JSON" in line["error"] and line["status"] == 200 for line in lines), lines
