"""Snapshots bound the restore: `connector run` with a snapshot every 700 changelog entries, SIGKILLed twice
(the second time right after a snapshot started: likely mid-transaction), then restarted.

The restart loads the latest committed snapshot and replays only the changelog after it (asserted from its
`state restored` line: entries = changelog end - the snapshot's offset, fewer than the changelog holds); the
state equals the reference (the same as a full replay of the changelog) and every minute is published whole.
"""

from __future__ import annotations

import signal
from collections import defaultdict
from pathlib import Path

import pytest

from framework import FoundryClient, load_environment
from framework.testing import FakeFoundry, advance_watermark

from .connector_process import ConnectorProcess
from .state_support import (
    GRACE_S,
    MINUTE_MS,
    WATERMARK_SENSOR,
    as_minute,
    input_of,
    readings,
    reference,
    restored_state,
    sensor_streams,
)
from .stream_support import committed, total, wait_until
from .test_state_e2e import assert_whole_minutes, minutes_of, start

pytestmark = pytest.mark.timeout(240)

READINGS = 8000
SNAPSHOT_EVERY = 700


async def test_a_restart_replays_only_the_changelog_after_the_latest_snapshot(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await sensor_streams(foundry)
        rows = readings(READINGS, sensors=20)
        await foundry.publish(s.readings, rows)
        expected = {k: as_minute(k, acc) for k, acc in reference(rows).items()}
        env = {**s.job.environ, "MINUTES_GRACE_S": str(GRACE_S), "MINUTES_SNAPSHOT_EVERY": str(SNAPSHOT_EVERY)}

        async with FoundryClient(load_environment(s.job.environ)) as client:
            source = input_of(s.job, client)

            async def committed_all() -> bool:
                return await committed(foundry, source)

            async def changelog_end() -> int:
                return await total(foundry, s.state)

            def snapshots_in(proc: ConnectorProcess, event: str) -> int:
                return sum(e.get("event") == event for e in proc.events())

            # 1. Killed once 2 snapshots were written, then again just after one more started.
            first = await start(tmp_path, "killed-0", env, "100")

            async def two_written() -> bool:
                assert first.process.returncode is None, first.output()
                return snapshots_in(first, "state snapshot written") >= 2

            await wait_until(two_written, "two snapshots written", timeout_s=60)
            assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
            second = await start(tmp_path, "killed-1", env, "37")
            restart_at = await changelog_end()

            async def snapshot_started() -> bool:
                assert second.process.returncode is None, second.output()
                return await changelog_end() >= restart_at + SNAPSHOT_EVERY + 50

            await wait_until(snapshot_started, "a snapshot due", timeout_s=60)
            assert await second.stop(signal.SIGKILL) == -signal.SIGKILL
            assert not await committed_all(), "the kills came after the work was done: nothing was tested"

            # 2. The restart: the latest snapshot, then only the changelog's tail.
            end_before = await changelog_end()
            last = await start(tmp_path, "finishing", env, "250")
            await wait_until(committed_all, "every reading committed", timeout_s=90)
            assert await last.stop() == 0, last.output()
            (restored,) = [e for e in last.events() if e.get("event") == "state restored"]
            assert restored["snapshot"] is True and 0 < restored["snapshot_offset"] <= end_before, restored
            assert restored["entries"] == end_before - restored["snapshot_offset"] < end_before, restored
            print(f"restore replayed {restored['entries']} of {end_before} changelog entries after a snapshot")

            # 3. The state, from the latest snapshot and its tail or from the whole changelog: the reference's.
            stored = await foundry.records(s.readings)
            latest: dict[str, float] = defaultdict(float)
            for r in stored:
                latest[r["partition"]] = max(latest[r["partition"]], r["value"]["ts"])
            watermark_ms = int(min(latest.values()) * 1000)
            still_open = {
                k: acc for k, acc in reference(rows).items() if k[1] + MINUTE_MS + GRACE_S * 1000 > watermark_ms
            }
            ends = await foundry.end_offsets(s.readings)
            for snapshots in (True, False):
                windows = await restored_state(s.job, snapshots=snapshots)
                assert windows.open_windows() == still_open, snapshots
                assert windows.applied() == {f"readings/{p}": n - 1 for p, n in ends.items()}
                assert (windows.restored_from is not None) is snapshots
            assert await changelog_end() == READINGS  # one entry per reading: none applied twice

            # 4. Close every window; every minute published, whole.
            await advance_watermark(foundry, s.readings, {"sensor": WATERMARK_SENSOR, "value": 0.0}, 2e9)
            final = await start(tmp_path, "closing", env, "1000")

            async def all_minutes() -> bool:
                got = {(v["sensor"], v["start_ms"]) for v in await minutes_of(foundry, s.minutes)}
                return got >= set(expected) and await committed_all()

            await wait_until(all_minutes, "every minute published", timeout_s=60)
            assert await final.stop() == 0, final.output()
        assert_whole_minutes(await minutes_of(foundry, s.minutes), expected, "stream")
