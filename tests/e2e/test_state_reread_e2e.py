"""Windowed state with checkpoint="reread" across crashes: no changelog, no snapshot dataset; the connector holds
its input's commits and rebuilds the windows at start-up by reading the input again.

`SensorMinutesReread` is SIGKILLed three times at random moments and restarted (a different read batch size
each time). The minutes published must equal a reference computed here for every sensor and minute (a minute
may come twice around a crash, only whole: counted), every late reading is dead-lettered, and every committed
position seen while it ran cuts no minute: each minute's readings are all before it (and then the minute was
published already) or all at or after it.
"""

from __future__ import annotations

import os
import random
import signal
from collections import defaultdict
from pathlib import Path

import pytest

from connectors.sensor_minutes import Reading, SensorMinute
from framework import DeadLetter, FoundryClient, StreamInput, load_environment
from framework.testing import FakeFoundry, advance_watermark, bind_handle, publish_at

from .connector_process import ConnectorProcess, start_connector
from .state_support import GRACE_S, LATE_TS, MINUTE_MS, WATERMARK_SENSOR, as_minute, readings, reference
from .stream_support import read_position, wait_until
from .test_state_e2e import assert_whole_minutes, minutes_of

pytestmark = pytest.mark.timeout(120)

SPEC = "connectors.sensor_minutes:SensorMinutesReread"
# 3,000 readings (25 minutes of 12 sensors) keep it under 30 s; REREAD_E2E_READINGS=30000 runs a longer one.
READINGS = int(os.environ.get("REREAD_E2E_READINGS", "3000"))
SENSORS = 12
LATE = 10
BATCH_SIZES = ["100", "37", "500", "250", "1000"]
Window = tuple[str, int]


async def test_three_sigkills_rebuild_every_minute_by_rereading_the_input(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        readings_rid = await foundry.create_stream("readings", Reading, partitions=3)
        minutes_rid = await foundry.create_stream("minutes", SensorMinute)
        dead = await foundry.create_stream("dead_letters", DeadLetter)
        table = await foundry.create_dataset("minutes_table")
        outputs = {"minutes": minutes_rid, "dead_letters": dead, "minutes_table": table}  # no state resource
        job = await foundry.job(inputs={"readings": readings_rid}, outputs=outputs)
        rows = readings(READINGS, sensors=SENSORS)
        await foundry.publish(readings_rid, rows)
        late_rows = [{"sensor": f"s{i % SENSORS:02d}", "value": 1.0} for i in range(LATE)]
        await publish_at(foundry, readings_rid, late_rows, [LATE_TS + i for i in range(LATE)])
        expected = {k: as_minute(k, acc) for k, acc in reference(rows).items()}
        offsets = await window_offsets(foundry, readings_rid)
        assert set(offsets) == set(expected)
        env = {**job.environ, "MINUTES_GRACE_S": str(GRACE_S)}

        async with FoundryClient(load_environment(job.environ)) as client:
            source = bind_handle(
                StreamInput[Reading]("readings"),
                load_environment(job.environ),
                client,
                connector_name="SensorMinutesReread",
            )
            checked: list[dict[str, int]] = []

            async def commits_cut_no_minute() -> list[Window]:
                """The committed position now, checked against every minute; returns the minutes published."""
                try:
                    position = await read_position(foundry, source)
                except AssertionError:  # no subscriber yet
                    position = {}
                copies = [(v["sensor"], v["start_ms"]) for v in await minutes_of(foundry, minutes_rid)]
                published = set(copies)
                for window, by_partition in offsets.items():
                    before = [all(o < position.get(p, 0) for o in offs) for p, offs in by_partition.items()]
                    after = [all(o >= position.get(p, 0) for o in offs) for p, offs in by_partition.items()]
                    assert all(before) or all(after), f"commit {position} cuts minute {window}: {by_partition}"
                    if all(before):
                        assert window in published, f"commit {position} passed minute {window}, not published"
                checked.append(position)
                return copies

            # 1. Three runs killed once each published a random number of minutes, then one that publishes the rest.
            rng = random.Random(20240502)
            reread_from: list[dict[str, int]] = []
            for i in range(3):
                threshold = len(await commits_cut_no_minute()) + rng.randrange(len(expected) // 10, len(expected) // 3)
                proc = await start(tmp_path, f"killed-{i}", env, BATCH_SIZES[i])

                async def reached(threshold: int = threshold, proc: ConnectorProcess = proc) -> bool:
                    assert proc.process.returncode is None, proc.output()
                    return len(await commits_cut_no_minute()) >= threshold

                await wait_until(reached, f"{threshold} minutes published", timeout_s=30, every_s=0.05)
                assert await proc.stop(signal.SIGKILL) == -signal.SIGKILL
                reread_from.append(await read_position(foundry, source))
            unfinished = [p for p in reread_from if sum(p.values()) < READINGS]
            assert len(unfinished) >= 2, f"the kills came after the work was done: {reread_from}"
            last = await start(tmp_path, "finishing", env, BATCH_SIZES[3])

            async def all_but_the_last_minutes() -> bool:
                assert last.process.returncode is None, last.output()
                started = any(e.get("event") == "state re-reading" for e in last.events())
                return started and len(set(await commits_cut_no_minute())) >= len(expected) - 2 * SENSORS

            await wait_until(all_but_the_last_minutes, "the closed minutes published", timeout_s=40, every_s=0.05)
            assert await last.stop() == 0, last.output()
            starts = [e for e in last.events() if e.get("event") == "state re-reading"]
            assert starts and starts[0]["positions"], last.output()
            assert not [e for e in last.events() if e.get("event") == "state restored"]  # no changelog read

            # 2. Close every window: a last run publishes the rest and holds only at the watermark's readings.
            await advance_watermark(foundry, readings_rid, {"sensor": WATERMARK_SENSOR, "value": 0.0}, LATE_TS * 2)
            final = await start(tmp_path, "closing", env, BATCH_SIZES[4])

            async def every_minute() -> bool:
                assert final.process.returncode is None, final.output()
                return set(await commits_cut_no_minute()) >= set(expected)

            await wait_until(every_minute, "every minute published", timeout_s=30, every_s=0.05)
            ends = await foundry.end_offsets(readings_rid)
            held = {p: n - 1 for p, n in ends.items()}  # each partition's last reading opens a window of its own

            async def held_at_the_watermark() -> bool:
                return await read_position(foundry, source) == held

            await wait_until(held_at_the_watermark, f"the commit held at {held}", timeout_s=20)
            assert await final.stop() == 0, final.output()
            print(f"{len(checked)} committed positions checked; re-read from {reread_from}")

        published = await minutes_of(foundry, minutes_rid)
        assert_whole_minutes(published, expected, "stream")
        stored = await foundry.records(readings_rid)
        late_positions = {(r["partition"], r["offset"]) for r in stored if r["value"]["ts"] <= LATE_TS + LATE}
        letters = [r["value"] for r in await foundry.records(dead)]
        assert {(str(v["partition"]), v["offset"]) for v in letters} == late_positions
        print(f"dead letters: {len(letters)} for {LATE} late readings")


async def start(tmp_path: Path, name: str, env: dict[str, str], batch_size: str) -> ConnectorProcess:
    environ = {**env, "CONNECTOR_READ_BATCH_SIZE": batch_size, "CONNECTOR_LOG_LEVEL": "INFO"}
    return await start_connector(tmp_path, name, SPEC, environ, prefixes=("MINUTES_",))


async def window_offsets(foundry: FakeFoundry, rid: str) -> dict[Window, dict[str, list[int]]]:
    """Every minute of the (on-time) readings: its readings' offsets per partition."""
    found: dict[Window, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for r in await foundry.records(rid):
        value = r["value"]
        if value["ts"] > LATE_TS + LATE:
            start = int(value["ts"] * 1000) // MINUTE_MS * MINUTE_MS
            found[(value["sensor"], start)][str(r["partition"])].append(int(r["offset"]))
    return {k: dict(v) for k, v in found.items()}
