"""The sensor-minutes connector's streams, its input readings and the reference results the tests expect."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from connectors.sensor_minutes import MinuteStats, Reading, SensorMinute
from framework import ChangelogEntry, DeadLetter, FoundryClient, StreamInput, Tumbling, Windowed, load_environment
from framework.testing import FakeFoundry, Job, bind_handle

SPEC = "connectors.sensor_minutes:SensorMinutes"
T0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z: minute-aligned
MINUTE_MS = 60_000
GRACE_S = 30.0
LATE_TS = T0 - 3600  # an hour before every window: late once every partition has a reading
WATERMARK_SENSOR = "_watermark"


@dataclass
class Streams:
    readings: str
    minutes: str
    state: str
    dead: str
    table: str
    job: Job
    snapshots: str = ""


async def sensor_streams(foundry: FakeFoundry, partitions: int = 3, schema: dict[str, Any] | None = None) -> Streams:
    readings = await foundry.create_stream("readings", Reading, partitions=partitions, schema=schema)
    minutes = await foundry.create_stream("minutes", SensorMinute)
    state = await foundry.create_stream("state", ChangelogEntry)
    dead = await foundry.create_stream("dead_letters", DeadLetter)
    table = await foundry.create_dataset("minutes_table")
    snapshots = await foundry.create_dataset("state_snapshots")
    outputs = {
        "minutes": minutes,
        "state": state,
        "dead_letters": dead,
        "minutes_table": table,
        "state_snapshots": snapshots,
    }
    job = await foundry.job(inputs={"readings": readings}, outputs=outputs)
    return Streams(readings, minutes, state, dead, table, job, snapshots)


def readings(count: int, sensors: int = 20) -> list[dict[str, Any]]:
    """Half a second apart, jittered by up to 5 s (under the grace period), integer values (exact sums)."""
    return [
        {"sensor": f"s{i % sensors:02d}", "ts": T0 + i * 0.5 + (i * 37 % 11) * 0.5, "value": float(i * 7 % 101)}
        for i in range(count)
    ]


def reference(rows: list[dict[str, Any]]) -> dict[tuple[str, int], MinuteStats]:
    """Every (sensor, minute start ms) window of `rows`, aggregated in the test."""
    found: dict[tuple[str, int], MinuteStats] = defaultdict(MinuteStats)
    for row in rows:
        start = int(row["ts"] * 1000) // MINUTE_MS * MINUTE_MS
        acc = found[(row["sensor"], start)]
        value = row["value"]
        acc.count += 1
        acc.total += value
        acc.low = value if acc.low is None else min(acc.low, value)
        acc.high = value if acc.high is None else max(acc.high, value)
    return dict(found)


def as_minute(key: tuple[str, int], acc: MinuteStats) -> dict[str, Any]:
    assert acc.low is not None and acc.high is not None
    return {
        "sensor": key[0],
        "start_ms": key[1],
        "count": acc.count,
        "mean": acc.total / acc.count,
        "low": acc.low,
        "high": acc.high,
    }


def input_of(job: Job, client: FoundryClient) -> StreamInput[Any]:
    """The connector's input as it binds it (its subscriber id)."""
    env = load_environment(job.environ)
    return bind_handle(StreamInput[Reading]("readings"), env, client, connector_name="SensorMinutes")


async def restored_state(job: Job, *, snapshots: bool = False) -> Windowed[Any, Any, Any]:
    """The connector's windows as a restart would restore them, from the changelog stream (after the latest
    snapshot, with `snapshots`) in the test."""
    from datetime import timedelta

    from connectors.sensor_minutes import Stats

    env = load_environment(job.environ)
    async with FoundryClient(env) as client:
        windows = bind_handle(
            Windowed(
                "state",
                window=Tumbling(timedelta(minutes=1)),
                aggregate=Stats(),
                key="sensor",
                time="ts",
                snapshots="state_snapshots" if snapshots else None,
            ),
            env,
            client,
        )
        await windows.restore({}, None)
    return windows
