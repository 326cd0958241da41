"""Windowed state across crashes and changes of worker count: `connector run` with CONNECTOR_WORKERS 1, 2 and 3,
each SIGKILLed with all its workers at a random moment, then 2 workers and 1 to finish.

Every reading must be applied exactly once whatever the worker count (one changelog entry each), each worker's
state must be the reference's for its partitions' sensors, and the final minutes must equal the reference for
every sensor and minute (a minute may be published twice around a crash, only whole).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import defaultdict
from pathlib import Path

import pytest

from connectors.sensor_minutes import Reading
from framework import DatasetInput, FoundryClient, load_environment, stream_schema
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
from .test_state_e2e import assert_whole_minutes, minutes_of

pytestmark = pytest.mark.timeout(240)

# 8,000 keep it near 30 s; WORKERS_E2E_READINGS=100000 runs the size.
READINGS = int(os.environ.get("WORKERS_E2E_READINGS", "8000"))
SENSORS = 20
LATE = 20
PARTITIONS = 4
KILLED_WORKERS = [1, 2, 3]


async def test_sigkills_across_one_two_three_workers_apply_each_reading_once(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        keyed = {**stream_schema(Reading), "keyFieldNames": ["sensor"]}
        s = await sensor_streams(foundry, partitions=PARTITIONS, schema=keyed)
        rows = readings(READINGS, sensors=SENSORS)
        await foundry.publish(s.readings, rows)
        late_rows = [{"sensor": f"s{i % SENSORS:02d}", "value": 1.0} for i in range(LATE)]
        await publish_at(foundry, s.readings, late_rows, [LATE_TS + i for i in range(LATE)])
        expected = {k: as_minute(k, acc) for k, acc in reference(rows).items()}
        env = {**s.job.environ, "MINUTES_GRACE_S": str(GRACE_S), "CONNECTOR_LOG_LEVEL": "INFO"}
        stored = await foundry.records(s.readings)
        partition_of = {r["value"]["sensor"]: int(r["partition"]) for r in stored}
        assert len({partition_of[f"s{i:02d}"] for i in range(SENSORS)}) == PARTITIONS

        async with FoundryClient(load_environment(s.job.environ)) as client:
            source = input_of(s.job, client)

            async def committed_all() -> bool:
                return await committed(foundry, source)

            rng = random.Random(20240503)
            kill_at = sorted(rng.sample(range(READINGS // 10, READINGS * 9 // 10), len(KILLED_WORKERS)))
            unfinished = 0
            for i, (workers, threshold) in enumerate(zip(KILLED_WORKERS, kill_at, strict=True)):
                proc = await start(tmp_path, f"killed-{i}-{workers}w", env, workers)

                async def reached(threshold: int = threshold, proc: ConnectorProcess = proc) -> bool:
                    assert proc.process.returncode is None, proc.output()
                    return await total(foundry, s.state) >= threshold or await committed_all()

                await wait_until(reached, f"{threshold} changelog entries", timeout_s=60)
                assert await proc.kill_all() == -signal.SIGKILL
                unfinished += not await committed_all()
            assert unfinished >= 2, "the kills came after the work was done: nothing was tested"

            # Two workers finish the readings: each restored only its partitions' entries.
            before = await settled_total(foundry, s.state)  # a killed run's last request may still be landing
            last = await start(tmp_path, "finishing-2w", env, 2)
            await wait_until(committed_all, "every reading committed", timeout_s=90)
            assert await last.stop() == 0, last.output()
            restores = [e for e in last.events() if e.get("event") == "state restored"]
            assert len(restores) == 2 and all(e["other_workers"] > 0 for e in restores), last.output()
            assert sum(e["entries"] for e in restores) == before  # split between them, none replayed twice
            assert await total(foundry, s.state) == READINGS + LATE  # one entry per reading: none applied twice

        # Each sensor's windows are open as its worker's watermark (the least of its two partitions) says.
        latest: dict[int, float] = defaultdict(float)
        for r in stored:
            if r["value"]["ts"] > LATE_TS + LATE:
                latest[int(r["partition"])] = max(latest[int(r["partition"])], r["value"]["ts"])
        watermark_ms = {
            w: int(min(t for p, t in latest.items() if p % 2 == w) * 1000) for w in range(2)
        }  # the last run's two workers
        still_open = {
            k: acc
            for k, acc in reference(rows).items()
            if k[1] + MINUTE_MS + GRACE_S * 1000 > watermark_ms[partition_of[k[0]] % 2]
        }
        windows = await restored_state(s.job)
        assert windows.open_windows() == still_open
        ends = await foundry.end_offsets(s.readings)
        assert windows.applied() == {f"readings/{p}": n - 1 for p, n in ends.items()}

        # One worker closes every window.
        await advance_watermark(foundry, s.readings, {"sensor": WATERMARK_SENSOR, "value": 0.0}, LATE_TS * 2)
        final = await start(tmp_path, "closing-1w", env, 1)
        async with FoundryClient(load_environment(s.job.environ)) as client:
            source = input_of(s.job, client)

            async def all_minutes() -> bool:
                assert final.process.returncode is None, final.output()
                got = {(v["sensor"], v["start_ms"]) for v in await minutes_of(foundry, s.minutes)}
                return got >= set(expected) and await committed(foundry, source)

            await wait_until(all_minutes, "every minute published", timeout_s=60)
        assert await final.stop() == 0, final.output()

        assert_whole_minutes(await minutes_of(foundry, s.minutes), expected, "stream")
        reader = await foundry.job(inputs={"minutes_table": s.table}, outputs={})
        renv = load_environment(reader.environ)
        async with FoundryClient(renv) as rclient:
            table = await bind_handle(DatasetInput("minutes_table"), renv, rclient, connector_name="r").read_table()
        rows_out = [r for r in table.to_pylist() if not r["sensor"].startswith(WATERMARK_SENSOR)]
        assert_whole_minutes(rows_out, expected, "dataset")
        letters = [r["value"] for r in await foundry.records(s.dead)]
        late_positions = {(r["partition"], r["offset"]) for r in stored if r["value"]["ts"] <= LATE_TS + LATE}
        assert {(str(v["partition"]), v["offset"]) for v in letters} == late_positions


async def settled_total(foundry: FakeFoundry, rid: str) -> int:
    last = -1
    for _ in range(50):
        now = await total(foundry, rid)
        if now == last:
            return now
        last = now
        await asyncio.sleep(0.1)
    raise AssertionError(f"the changelog kept growing with no connector running: {last} entries")


async def start(tmp_path: Path, name: str, env: dict[str, str], workers: int) -> ConnectorProcess:
    environ = {**env, "CONNECTOR_WORKERS": str(workers), "CONNECTOR_READ_BATCH_SIZE": str(97 * workers)}
    return await start_connector(tmp_path, name, SPEC, environ, prefixes=("MINUTES_",), own_group=True)
