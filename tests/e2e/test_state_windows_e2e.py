"""Windowed state in-process against the fake: results on close, late readings dead-lettered, restore on restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.sensor_minutes import SensorMinutes
from framework.testing import FakeFoundry, advance_watermark, publish_at

from .state_support import (
    LATE_TS,
    T0,
    WATERMARK_SENSOR,
    as_minute,
    readings,
    reference,
    restored_state,
    sensor_streams,
)
from .stream_support import wait_committed

pytestmark = pytest.mark.timeout(90)


async def test_minutes_close_on_the_watermark_and_late_readings_are_dead_lettered_with_positions(
    tmp_path: Path,
) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await sensor_streams(foundry)
        rows = readings(1200, sensors=5)
        await foundry.publish(s.readings, rows)
        late = [{"sensor": "s00", "value": 1.0}] * 4
        await publish_at(foundry, s.readings, late, [LATE_TS + i for i in range(4)])
        end = T0 + 3600
        await advance_watermark(foundry, s.readings, {"sensor": WATERMARK_SENSOR, "value": 0.0}, end)
        expected = {k: as_minute(k, acc) for k, acc in reference(rows).items()}

        async with s.job.running(SensorMinutes) as connector:
            await foundry.wait_for_records(s.minutes, len(expected))
            letters = await foundry.wait_for_records(s.dead, 4)
            await wait_committed(foundry, connector.readings)

        got = {(r["value"]["sensor"], r["value"]["start_ms"]): r["value"] for r in await foundry.records(s.minutes)}
        assert got == expected
        assert connector.windows.late == 4 and connector.windows.closed == len(expected)
        late_positions = {
            (r["partition"], r["offset"]) for r in await foundry.records(s.readings) if r["value"]["ts"] < T0
        }
        assert {(str(v["value"]["partition"]), v["value"]["offset"]) for v in letters} == late_positions
        assert all("late record" in v["value"]["error"] for v in letters)
        assert {json.loads(v["value"]["raw"])["ts"] for v in letters} == {LATE_TS + i for i in range(4)}

        # The changelog holds the state: only the watermark readings' window is open, every offset applied.
        windows = await restored_state(s.job)
        assert set(windows.open_windows()) == {(WATERMARK_SENSOR, int(end * 1000))}
        ends = await foundry.end_offsets(s.readings)
        assert windows.applied() == {f"readings/{p}": n - 1 for p, n in ends.items()}


async def test_a_restart_restores_open_windows_and_finishes_them(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await sensor_streams(foundry)
        rows = readings(900, sensors=4)
        await foundry.publish(s.readings, rows[:600])
        async with s.job.running(SensorMinutes, extra_env={"CONNECTOR_READ_BATCH_SIZE": "50"}) as first:
            await wait_committed(foundry, first.readings)
        assert first.windows.size > 0
        await foundry.publish(s.readings, rows[600:])
        await advance_watermark(foundry, s.readings, {"sensor": WATERMARK_SENSOR, "value": 0.0}, T0 + 3600)
        expected = {k: as_minute(k, acc) for k, acc in reference(rows).items()}
        async with s.job.running(SensorMinutes, extra_env={"CONNECTOR_READ_BATCH_SIZE": "333"}) as second:
            await wait_committed(foundry, second.readings)
        assert second.windows.restored > 0
        got = [r["value"] for r in await foundry.records(s.minutes)]
        assert {(v["sensor"], v["start_ms"]): v for v in got} == expected
        assert len(got) == len(expected)  # a clean stop publishes no window twice
