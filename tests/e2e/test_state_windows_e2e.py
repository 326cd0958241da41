"""Windowed state in-process against the fake: results on close, late readings dead-lettered, restore on restart,
session windows merged across partitions."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from connectors.sensor_minutes import Reading, SensorMinutes, Stats
from framework import Connector, Session, StreamInput, StreamOutput, Windowed
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
GRACE = timedelta(minutes=5)


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


class SensorSession(BaseModel):
    sensor: str
    start_ms: int
    end_ms: int
    count: int
    total: float


class SensorSessions(Connector):
    """Per-sensor sessions (a reading within 10 s of a session joins it), to the stream `sessions`."""

    readings = StreamInput[Reading]("readings")
    sessions = StreamOutput[SensorSession]("sessions")
    windows = Windowed(
        "state", window=Session(timedelta(seconds=10)), aggregate=Stats(), key="sensor", time="ts", grace=GRACE
    )

    async def transform(self, reading: Reading) -> list[SensorSession]:
        return [
            SensorSession(sensor=w.key, start_ms=w.start_ms, end_ms=w.end_ms, count=w.value.count, total=w.value.total)
            for w in await self.windows.add(reading)
        ]


async def test_sessions_merge_across_partitions_and_close_on_the_watermark(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await sensor_streams(foundry)
        sessions = await foundry.create_stream("sessions", SensorSession)
        job = await foundry.job(inputs={"readings": s.readings}, outputs={"sessions": sessions, "state": s.state})
        # Bursts of a sensor's readings 4 s apart (one session each), 25 s between bursts; round robin over 3
        # partitions, so each partition alone sees a sensor every 12 s (over the 10 s gap): its sessions start
        # apart and are merged by the other partitions' readings between them.
        rows: list[dict[str, Any]] = [
            {"sensor": f"s{i % 4}", "ts": T0 + (i // 4) * 4 + (i // 40) * 25, "value": float(i % 9)} for i in range(800)
        ]
        await foundry.publish(s.readings, rows)
        await advance_watermark(foundry, s.readings, {"sensor": WATERMARK_SENSOR, "value": 0.0}, T0 + 36_000)
        expected: list[dict[str, object]] = []
        for sensor in sorted({r["sensor"] for r in rows}):
            mine = sorted((r for r in rows if r["sensor"] == sensor), key=lambda r: r["ts"])
            group: list[dict[str, Any]] = []
            for r in [*mine, None]:
                if group and (r is None or r["ts"] - group[-1]["ts"] >= 10):
                    start, last = int(group[0]["ts"] * 1000), int(group[-1]["ts"] * 1000)
                    total = sum(g["value"] for g in group)
                    expected.append(
                        {
                            "sensor": sensor,
                            "start_ms": start,
                            "end_ms": last + 10_000,
                            "count": len(group),
                            "total": total,
                        }
                    )
                    group = []
                if r is not None:
                    group.append(r)
        async with job.running(SensorSessions, extra_env={"CONNECTOR_READ_BATCH_SIZE": "7"}) as connector:
            await wait_committed(foundry, connector.readings)
        got = [r["value"] for r in await foundry.records(sessions) if r["value"]["sensor"] != WATERMARK_SENSOR]
        assert sorted(got, key=lambda v: (v["sensor"], v["start_ms"])) == expected
        assert connector.windows.late == 0 and connector.windows.merged > 0 and len(expected) == 4 * 20
