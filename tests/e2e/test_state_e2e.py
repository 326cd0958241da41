"""Windowed state across crashes: `connector run` SIGKILLed three times at random moments, then restarted.

The final per-sensor minutes must equal those of a run without kills (the reference computed here), for every
sensor and minute: a minute may be published twice around a crash, but only whole (counted), and the state
restored from the changelog must hold exactly the open windows the reference says, every reading applied once.
"""

from __future__ import annotations

import os
import random
import signal
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from framework import DatasetInput, FoundryClient, load_environment
from framework.testing import FakeFoundry, advance_watermark, bind_handle, publish_at

from .connector_process import ConnectorProcess, start_connector
from .state_support import (
    GRACE_S,
    LATE_TS,
    MINUTE_MS,
    SPEC,
    WATERMARK_SENSOR,
    as_minute,
    input_of,
    readings,
    reference,
    restored_state,
    sensor_streams,
)
from .stream_support import committed, total, wait_until

pytestmark = pytest.mark.timeout(240)

# 12,000 keeps `make test` fast; STATE_E2E_READINGS=100000 runs the full-size version of the same test.
READINGS = int(os.environ.get("STATE_E2E_READINGS", "12000"))
SENSORS = 20
LATE = 30
BATCH_SIZES = ["100", "500", "37", "250", "1000"]  # a different read batch size on every restart


async def test_three_sigkills_lose_no_reading_and_apply_each_once(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await sensor_streams(foundry)
        rows = readings(READINGS, sensors=SENSORS)
        await foundry.publish(s.readings, rows)
        late_rows = [{"sensor": f"s{i % SENSORS:02d}", "value": 1.0} for i in range(LATE)]
        await publish_at(foundry, s.readings, late_rows, [LATE_TS + i for i in range(LATE)])
        expected = {k: as_minute(k, acc) for k, acc in reference(rows).items()}
        env = {**s.job.environ, "MINUTES_GRACE_S": str(GRACE_S)}

        async with FoundryClient(load_environment(s.job.environ)) as client:
            source = input_of(s.job, client)

            async def committed_all() -> bool:
                return await committed(foundry, source)

            async def changelog_entries() -> int:
                return await total(foundry, s.state)

            # 1. Three runs killed at random points of the changelog's progress, then one that finishes.
            rng = random.Random(20240501)
            kill_at = sorted(rng.sample(range(READINGS // 10, READINGS * 9 // 10), 3))
            runs: list[ConnectorProcess] = []
            unfinished = 0
            for i, threshold in enumerate(kill_at):
                proc = await start(tmp_path, f"killed-{i}", env, BATCH_SIZES[i])
                runs.append(proc)

                async def reached(threshold: int = threshold, proc: ConnectorProcess = proc) -> bool:
                    assert proc.process.returncode is None, proc.output()
                    return await changelog_entries() >= threshold or await committed_all()

                await wait_until(reached, f"{threshold} changelog entries", timeout_s=60)
                assert await proc.stop(signal.SIGKILL) == -signal.SIGKILL
                unfinished += not await committed_all()
            assert unfinished >= 2, "the kills came after the work was done: nothing was tested"
            last = await start(tmp_path, "finishing", env, BATCH_SIZES[3])
            await wait_until(committed_all, "every reading committed", timeout_s=90)
            assert await last.stop() == 0, last.output()
            restores = [e for e in last.events() if e.get("event") == "state restored"]
            assert restores and restores[0]["entries"] > 0, last.output()

            # 2. The restored state is the reference's: the windows the watermark has not closed, every offset applied.
            stored = await foundry.records(s.readings)
            latest: dict[str, float] = defaultdict(float)
            for r in stored:
                if r["value"]["ts"] > LATE_TS + LATE:
                    latest[r["partition"]] = max(latest[r["partition"]], r["value"]["ts"])
            watermark_ms = int(min(latest.values()) * 1000)
            still_open = {
                k: acc for k, acc in reference(rows).items() if k[1] + MINUTE_MS + GRACE_S * 1000 > watermark_ms
            }
            windows = await restored_state(s.job)
            assert windows.open_windows() == still_open
            ends = await foundry.end_offsets(s.readings)
            assert windows.applied() == {f"readings/{p}": n - 1 for p, n in ends.items()}
            assert await changelog_entries() == READINGS + LATE  # one entry per reading: none applied twice

            # 3. Close every window; a last run publishes the rest.
            await advance_watermark(foundry, s.readings, {"sensor": WATERMARK_SENSOR, "value": 0.0}, LATE_TS * 2)
            final = await start(tmp_path, "closing", env, BATCH_SIZES[4])

            async def all_minutes() -> bool:
                got = {(v["sensor"], v["start_ms"]) for v in await minutes_of(foundry, s.minutes)}
                return got >= set(expected) and await committed_all()

            await wait_until(all_minutes, "every minute published", timeout_s=60)
            assert await final.stop() == 0, final.output()

        published = await minutes_of(foundry, s.minutes)
        assert_whole_minutes(published, expected, "stream")
        reader = await foundry.job(inputs={"minutes_table": s.table}, outputs={})
        renv = load_environment(reader.environ)
        async with FoundryClient(renv) as rclient:
            table = await bind_handle(DatasetInput("minutes_table"), renv, rclient, connector_name="r").read_table()
        assert_whole_minutes(table.to_pylist(), expected, "dataset")

        letters = [r["value"] for r in await foundry.records(s.dead)]
        late_positions = {(r["partition"], r["offset"]) for r in stored if r["value"]["ts"] <= LATE_TS + LATE}
        assert len(late_positions) == LATE
        assert {(str(v["partition"]), v["offset"]) for v in letters} == late_positions
        print(f"dead letters: {len(letters)} for {LATE} late readings")


async def start(tmp_path: Path, name: str, env: dict[str, str], batch_size: str) -> ConnectorProcess:
    environ = {**env, "CONNECTOR_READ_BATCH_SIZE": batch_size, "CONNECTOR_LOG_LEVEL": "INFO"}
    return await start_connector(tmp_path, name, SPEC, environ, prefixes=("MINUTES_",))


async def minutes_of(foundry: FakeFoundry, rid: str) -> list[dict[str, Any]]:
    """The minutes published, without the watermark readings' (on a keyed stream: `_watermark#n`)."""
    return [r["value"] for r in await foundry.records(rid) if not r["value"]["sensor"].startswith(WATERMARK_SENSOR)]


def assert_whole_minutes(
    got: list[dict[str, Any]], expected: dict[tuple[str, int], dict[str, Any]], where: str
) -> None:
    """Every expected minute at least once; every copy whole and equal to the reference."""
    copies = Counter((v["sensor"], v["start_ms"]) for v in got)
    assert set(copies) == set(expected), where
    wrong = [v for v in got if v != expected[(v["sensor"], v["start_ms"])]]
    assert wrong == [], f"{where}: partial or wrong minutes {wrong[:3]}"
    duplicates = sum(copies.values()) - len(copies)
    print(f"{where}: {len(copies)} minutes, {duplicates} published twice around a crash")
