"""Foundry down for longer than any retry budget, under a running connector: it stays up and loses nothing.

Before: the per-request budget (8 attempts, 10 s cap) ran out after ~6-12 s and the connector died with a
traceback. Now `connector run` retries without limit, logs the outage in a few lines, and a SIGTERM during
an outage still exits within the shutdown timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from connectors.doubler import Doubler
from framework.testing import FakeFoundry, capture_logs

from .connector_process import start_connector
from .stream_support import doubler_streams, total, wait_committed, wait_until

pytestmark = pytest.mark.timeout(90)

FAST = {
    "CONNECTOR_RETRY_MAX_ATTEMPTS": "0",
    "CONNECTOR_RETRY_INITIAL_BACKOFF_S": "0.02",
    "CONNECTOR_RETRY_MAX_BACKOFF_S": "0.1",
    "CONNECTOR_OUTAGE_REPORT_S": "0.3",
}


def named(logs: list[MutableMapping[str, Any]], prefix: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if str(e["event"]).startswith(prefix)]


async def test_an_outage_longer_than_the_old_retry_budget_is_ridden_out_in_a_few_lines(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        assert foundry.server is not None
        s = await doubler_streams(foundry, partitions=2)
        await foundry.publish(s.numbers, [{"x": i} for i in range(100)])
        with capture_logs() as logs:
            async with s.job.running(Doubler, extra_env=FAST) as connector:
                await foundry.wait_for_records(s.doubled, 100)
                await foundry.server.stop()
                # Past 8 attempts of at most 0.1 s each, and past several "still unavailable" reports.
                await wait_until(
                    lambda: _reports(logs, 3), "three 'still unavailable' lines", timeout_s=30, every_s=0.05
                )
                assert connector.client.outage.active
                await foundry.server.start()
                await foundry.publish(s.numbers, [{"x": i} for i in range(100, 200)])
                await foundry.wait_for_records(s.doubled, 200)
                await wait_committed(foundry, connector.numbers)

        out = Counter(r["value"]["twice_x"] for r in await foundry.records(s.doubled))
        assert set(out) == {2 * i for i in range(200)}  # nothing lost
        assert len(named(logs, "Foundry unavailable")) == 1
        assert len(named(logs, "Foundry available again")) == 1
        assert 3 <= len(named(logs, "Foundry still unavailable for")) < 100
        assert not [
            e for e in logs if e["log_level"] in ("warning", "error") and e["event"] == "retrying Foundry request"
        ]
        assert not connector.client.outage.active


async def _reports(logs: list[MutableMapping[str, Any]], count: int) -> bool:
    return len(named(logs, "Foundry still unavailable for")) >= count


async def test_sigterm_during_an_outage_exits_within_the_shutdown_timeout(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        assert foundry.server is not None
        s = await doubler_streams(foundry, partitions=1)
        await foundry.publish(s.numbers, [{"x": i} for i in range(50)])
        environ = {**s.job.environ, **FAST, "CONNECTOR_SHUTDOWN_TIMEOUT_S": "2"}
        process = await start_connector(tmp_path, "outage", "connectors.doubler:Doubler", environ)
        try:
            await wait_until(lambda: _at_least(foundry, s.doubled, 50), "50 records out", timeout_s=30)
            await foundry.server.stop()
            await wait_until(lambda: _in(process.output(), "Foundry unavailable"), "the outage line", timeout_s=30)
            started = time.monotonic()
            code = await process.stop(timeout_s=10)
            assert time.monotonic() - started < 8, process.output()
        finally:
            if process.process.returncode is None:
                process.process.kill()
                await process.process.wait()
            await foundry.server.start()
        assert code in (0, 1), process.output()
        assert "Traceback" not in process.output()


async def _at_least(foundry: FakeFoundry, rid: str, count: int) -> bool:
    return await total(foundry, rid) >= count


async def _in(text: str, needle: str) -> bool:
    await asyncio.sleep(0)
    return needle in text
