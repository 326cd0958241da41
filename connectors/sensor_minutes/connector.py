"""Per-sensor per-minute aggregates of `readings` to the stream `minutes` and the dataset `minutes_table`.

Readings later than the grace period (their minute closed already) go to `dead_letters` with their position.
The windows' state is checkpointed to the changelog stream `state` and restored at start-up, so a killed
connector resumes with every reading applied exactly once; a minute may be published twice around a crash,
whole, never partially. Every `MINUTES_SNAPSHOT_EVERY` entries (100,000) the whole state is written to the
dataset `state_snapshots`, so a restart replays only the changelog after the latest snapshot.

Run it: `connector run connectors.sensor_minutes:SensorMinutes`
`SensorMinutesReread` is the same with `checkpoint="reread"`: no changelog, no snapshots, the input re-read.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict
from structlog.stdlib import BoundLogger

from framework import (
    Aggregate,
    Connector,
    DatasetOutput,
    DeadLetterOutput,
    Environment,
    FoundryClient,
    StreamInput,
    StreamOutput,
    Tumbling,
    Windowed,
)


class Reading(BaseModel):
    sensor: str
    ts: float  # event time, seconds since the epoch
    value: float


class MinuteStats(BaseModel):
    """The accumulator of one sensor's minute (checkpointed in the changelog)."""

    count: int = 0
    total: float = 0.0
    low: float | None = None
    high: float | None = None


class SensorMinute(BaseModel):
    sensor: str
    start_ms: int
    count: int
    mean: float
    low: float
    high: float


class Stats(Aggregate[Reading, MinuteStats, MinuteStats]):
    accumulator = MinuteStats

    def init(self) -> MinuteStats:
        return MinuteStats()

    def add(self, acc: MinuteStats, record: Reading) -> MinuteStats:
        return MinuteStats(
            count=acc.count + 1,
            total=acc.total + record.value,
            low=record.value if acc.low is None else min(acc.low, record.value),
            high=record.value if acc.high is None else max(acc.high, record.value),
        )

    def merge(self, first: MinuteStats, second: MinuteStats) -> MinuteStats:
        """Two accumulators as one (what `Session` windows call when a reading bridges two sessions)."""
        lows = [v for v in (first.low, second.low) if v is not None]
        highs = [v for v in (first.high, second.high) if v is not None]
        return MinuteStats(
            count=first.count + second.count,
            total=first.total + second.total,
            low=min(lows) if lows else None,
            high=max(highs) if highs else None,
        )


class MinutesSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MINUTES_")
    grace_s: float = 30.0
    table_flush_interval_s: float = 1.0
    snapshot_every: int = 100_000  # changelog entries between snapshots of the windows to `state_snapshots`


def minute_windows(**options: Any) -> Windowed[Reading, MinuteStats, MinuteStats]:
    """Each sensor's one-minute windows (`options`: how they are checkpointed)."""
    return Windowed(
        "state", window=Tumbling(timedelta(minutes=1)), aggregate=Stats(), key="sensor", time="ts", **options
    )


class SensorMinutes(Connector):
    settings_model = MinutesSettings
    settings: MinutesSettings

    readings = StreamInput[Reading]("readings")
    minutes = StreamOutput[SensorMinute]("minutes")
    minutes_table = DatasetOutput("minutes_table", model=SensorMinute)
    dead_letters = DeadLetterOutput("dead_letters")
    windows = minute_windows(snapshots="state_snapshots")

    def __init__(self, env: Environment, client: FoundryClient, log: BoundLogger | None = None) -> None:
        super().__init__(env, client, log)
        self.windows.configure(
            grace=timedelta(seconds=self.settings.grace_s), snapshot_every=self.settings.snapshot_every
        )
        self.minutes_table.configure(flush_interval_s=self.settings.table_flush_interval_s)

    async def transform(self, reading: Reading) -> list[SensorMinute]:
        rows = [
            SensorMinute(
                sensor=w.key,
                start_ms=w.start_ms,
                count=w.value.count,
                mean=w.value.total / w.value.count,
                low=w.value.low if w.value.low is not None else 0.0,
                high=w.value.high if w.value.high is not None else 0.0,
            )
            for w in await self.windows.add(reading)
        ]
        if rows:
            await self.minutes_table.append(rows)
        return rows


class SensorMinutesReread(SensorMinutes):
    """The same minutes with no state resource: no changelog stream, no snapshot dataset. The input's commits are
    held at the earliest reading a minute still needs, and a restart rebuilds the minutes by reading the input
    again from there (up to a minute + grace of readings re-processed). `connector run
    connectors.sensor_minutes:SensorMinutesReread`"""

    windows = minute_windows(checkpoint="reread")
