"""KeyedState across crashes: running totals per account, `connector run` SIGKILLed twice at random points
(with snapshots every 300 changes), then restarted: the totals (restored from the snapshot and the changelog's
tail, and from the whole changelog) equal the reference sums, every payment counted exactly once."""

from __future__ import annotations

import random
import signal
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from framework import ChangelogEntry, FoundryClient, KeyedState, StreamInput, load_environment
from framework.testing import FakeFoundry, bind_handle

from .connector_process import ConnectorProcess, start_connector
from .state_totals import SPEC, AccountTotal, Payment, Total
from .stream_support import committed, total, wait_until

pytestmark = pytest.mark.timeout(180)

PAYMENTS = 5000
ACCOUNTS = 37


async def test_running_totals_are_exactly_once_through_sigkills(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        payments = await foundry.create_stream("payments", Payment, partitions=3)
        outputs = {
            "totals": await foundry.create_stream("totals", AccountTotal),
            "totals_state": await foundry.create_stream("totals_state", ChangelogEntry),
            "totals_snapshots": await foundry.create_dataset("totals_snapshots"),
        }
        job = await foundry.job(inputs={"payments": payments}, outputs=outputs)
        rows: list[dict[str, Any]] = [
            {"account": f"a{i % ACCOUNTS:02d}", "amount": i * 13 % 97 - 20} for i in range(PAYMENTS)
        ]
        await foundry.publish(payments, rows)
        expected: dict[str, Total] = defaultdict(Total)
        for row in rows:
            t = expected[row["account"]]
            t.amount, t.payments = t.amount + row["amount"], t.payments + 1
        env = {**job.environ, "TOTALS_SNAPSHOT_EVERY": "300", "CONNECTOR_LOG_LEVEL": "INFO"}
        jenv = load_environment(job.environ)

        async with FoundryClient(jenv) as client:
            source = bind_handle(StreamInput[Payment]("payments"), jenv, client, connector_name="RunningTotals")

            async def committed_all() -> bool:
                return await committed(foundry, source)

            async def changelog_end() -> int:
                return await total(foundry, outputs["totals_state"])

            async def run(name: str, batch_size: str) -> ConnectorProcess:
                environ = {**env, "CONNECTOR_READ_BATCH_SIZE": batch_size}
                return await start_connector(tmp_path, name, SPEC, environ, prefixes=("TOTALS_",))

            rng = random.Random(7)
            for i, threshold in enumerate(sorted(rng.sample(range(PAYMENTS // 10, PAYMENTS * 8 // 10), 2))):
                proc = await run(f"killed-{i}", ["50", "333"][i])

                async def reached(threshold: int = threshold, proc: ConnectorProcess = proc) -> bool:
                    assert proc.process.returncode is None, proc.output()
                    return await changelog_end() >= threshold or await committed_all()

                await wait_until(reached, f"{threshold} changelog entries", timeout_s=60)
                assert await proc.stop(signal.SIGKILL) == -signal.SIGKILL
            assert not await committed_all(), "the kills came after the work was done: nothing was tested"
            end_before = await changelog_end()
            last = await run("finishing", "128")
            await wait_until(committed_all, "every payment committed", timeout_s=90)
            assert await last.stop() == 0, last.output()
            (restored,) = [e for e in last.events() if e.get("event") == "state restored"]
            assert restored["snapshot"] is True, restored
            assert restored["entries"] == end_before - restored["snapshot_offset"] < end_before, restored

            for snapshots in ("totals_snapshots", None):
                totals = bind_handle(KeyedState[Total]("totals_state", snapshots=snapshots), jenv, client)
                await totals.restore({}, None)
                assert dict(totals.items()) == dict(expected), snapshots
            assert await changelog_end() == PAYMENTS  # one change per payment: none applied twice

        # What was published is at-least-once, but every account's last total is the reference's.
        last_total = {r["value"]["account"]: r["value"] for r in await foundry.records(outputs["totals"])}
        assert {a: Total(amount=v["amount"], payments=v["payments"]) for a, v in last_total.items()} == expected
