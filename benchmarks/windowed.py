"""Windowed aggregation against the stateless doubler on the same input, and restore time of a changelog.

1. Throughput: `connectors.sensor_minutes` (per-sensor per-minute windows, one changelog entry per reading,
   closed minutes to a stream and a dataset) and the doubler, each over N records in 3 partitions, as
   processes against a fake in a third process: seconds from start to the doubler's last output record, and
   to the windowed connector's last committed offset (after its watermark closed every minute).
2. Restore: M changelog entries shaped like the connector's (a window per entry, 20 sensors, 3 partitions)
   (a minute's windows deleted every 40 entries) published straight to the connector's changelog stream,
   then the connector started: the `seconds` of its `state restored` log line, per million entries (scaled
   linearly from M). Then with a snapshot: the state written to the `state_snapshots` dataset as covering all
   but the last 10% of the changelog (what `snapshot_every` = M / 10 leaves at most), and the connector started
   again: it loads the snapshot and replays only that tail.
Run: `python -m benchmarks.windowed [N] [M]`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks._common import table
from benchmarks.stream_throughput import _run_framework as run_doubler
from connectors.sensor_minutes import MinuteStats, Reading, SensorMinute, Stats
from framework import ChangelogEntry, DeadLetter, FoundryClient, StreamInput, Tumbling, Windowed, load_environment
from framework.testing import FakeFoundry, Job, advance_watermark, bind_handle, fake_process

T0 = 1_714_521_600.0
SPEC = "connectors.sensor_minutes:SensorMinutes"


async def sensor_job(foundry: FakeFoundry, suffix: str) -> tuple[str, dict[str, str], Job]:
    """The sensor-minutes job's streams (names ending in `suffix`): readings rid, output rids, the job."""
    readings = await foundry.create_stream(f"readings{suffix}", Reading, partitions=3)
    outputs = {
        "minutes": await foundry.create_stream(f"minutes{suffix}", SensorMinute),
        "state": await foundry.create_stream(f"state{suffix}", ChangelogEntry),
        "dead_letters": await foundry.create_stream(f"dead_letters{suffix}", DeadLetter),
        "minutes_table": await foundry.create_dataset(f"minutes_table{suffix}"),
        "state_snapshots": await foundry.create_dataset(f"state_snapshots{suffix}"),
    }
    return readings, outputs, await foundry.job(inputs={"readings": readings}, outputs=outputs)


async def run_windowed(foundry: FakeFoundry, count: int) -> float:
    readings, _, job = await sensor_job(foundry, "-windowed")
    rows = [{"sensor": f"s{i % 20:02d}", "ts": T0 + i * 0.5, "value": float(i % 101)} for i in range(count)]
    await foundry.publish(readings, rows)
    await advance_watermark(foundry, readings, {"sensor": "_watermark", "value": 0.0}, T0 + count)
    env = {**os.environ, **job.environ, "CONNECTOR_LOG_LEVEL": "WARNING", "CONNECTOR_PUBLISH_BATCH_SIZE": "1000"}
    job_env = load_environment(job.environ)
    async with FoundryClient(job_env) as client:
        source = bind_handle(StreamInput[Reading]("readings"), job_env, client, connector_name="SensorMinutes")
        ends = await foundry.end_offsets(readings)
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "framework.cli", "run", SPEC, env=env)
        try:
            for _ in range(600 * 20):  # bounded: 10 minutes
                try:
                    if await foundry.read_position(readings, source.subscriber_id) == ends:
                        return time.perf_counter() - started
                except AssertionError:  # no subscriber yet
                    pass
                await asyncio.sleep(0.05)
            raise RuntimeError("the windowed connector did not finish in 10 minutes")
        finally:
            process.terminate()
            await process.wait()


async def restore_seconds(foundry: FakeFoundry, entries: int) -> tuple[float, float, int]:
    """The `seconds` of the connector's own `state restored` log line over a changelog of `entries`: without a
    snapshot, then with one covering all but the last 10% (and how many entries that restore replayed)."""
    _, outputs, job = await sensor_job(foundry, "-restore")
    acc = MinuteStats(count=7, total=350.0, low=1.0, high=99.0).model_dump_json()
    batch: list[dict[str, object]] = []
    for i in range(entries):
        start = (int(T0) + i // 20 * 30) // 60 * 60_000
        changes: list[list[str | None]] = [[f"{start}|s{i % 20:02d}", acc]]
        if i % 40 == 39:  # a minute closes: its 20 windows are deleted
            changes += [[f"{start - 60_000}|s{k:02d}", None] for k in range(20)]
        entry = {"source": "readings", "partition": str(i % 3), "offset": i // 3, "changes": json.dumps(changes)}
        batch.append({**entry, "time_ms": start + 30_000, "late": False})
        if len(batch) == 10_000 or i == entries - 1:
            await foundry.publish(outputs["state"], batch)
            batch = []
    full = await restored_in_process(job)
    assert full["entries"] == entries and full["snapshot"] is False, full
    tail = entries // 10
    await write_snapshot(job, entries - tail)
    with_snapshot = await restored_in_process(job)
    assert with_snapshot["entries"] == tail and with_snapshot["snapshot"] is True, with_snapshot
    return float(full["seconds"]), float(with_snapshot["seconds"]), tail


async def write_snapshot(job: Job, offset: int) -> None:
    """The windows restored from the whole changelog, written as a snapshot covering the entries below `offset`
    (it covers them all; replaying the rest again changes nothing)."""
    env = load_environment(job.environ)
    async with FoundryClient(env) as client:
        window = Tumbling(timedelta(minutes=1))
        windows = bind_handle(
            Windowed("state", window=window, aggregate=Stats(), key="sensor", time="ts", snapshots="state_snapshots"),
            env,
            client,
        )
        await windows.restore({}, None)
        snapshots = windows.snapshots
        assert snapshots is not None
        await snapshots._write(offset, [snapshots._meta(offset), *windows.snapshot_rows()], time.monotonic())
        assert snapshots.written == 1


async def restored_in_process(job: Job) -> dict[str, Any]:
    """Start the connector and return its `state restored` log line."""
    env = {**os.environ, **job.environ, "CONNECTOR_LOG_FORMAT": "json", "CONNECTOR_LOG_LEVEL": "INFO"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framework.cli", "run", SPEC, env=env, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        for _ in range(100_000):  # bounded: the log lines before the restore ends
            line = await asyncio.wait_for(process.stdout.readline(), 600)
            if not line:
                break
            event = json.loads(line) if line.startswith(b"{") else {}
            if event.get("event") == "state restored":
                return dict(event)
        raise RuntimeError("the connector exited without restoring its state")
    finally:
        process.terminate()
        await process.communicate()


async def main(count: int, entries: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-windowed-") as tmp:
        async with fake_process(Path(tmp)) as foundry:
            doubler = await run_doubler(foundry, count)
            windowed = await run_windowed(foundry, count)
            restore, restore_snapshot, tail = await restore_seconds(foundry, entries)
    per_million = restore * 1_000_000 / entries
    snapshot_per_million = restore_snapshot * 1_000_000 / entries
    rows = [
        ("connector", "records", "seconds", "records/s", "ratio"),
        ("stateless doubler", str(count), f"{doubler:.2f}", f"{count / doubler:,.0f}", "1.00x"),
        ("windowed minutes", str(count), f"{windowed:.2f}", f"{count / windowed:,.0f}", f"{doubler / windowed:.2f}x"),
    ]
    print(table(rows))
    print(f"restore: {entries:,} changelog entries in {restore:.2f} s = {per_million:.1f} s per million (scaled)")
    print(
        f"restore with a snapshot covering all but {tail:,} entries: {restore_snapshot:.2f} s "
        f"= {snapshot_per_million:.1f} s per million changelog entries (bounded by snapshot_every, not the changelog)"
    )
    result = {"doubler_rps": count / doubler, "windowed_rps": count / windowed, "slowdown": windowed / doubler}
    restores = {"restore_s_per_million": per_million, "restore_with_snapshot_s_per_million": snapshot_per_million}
    print(json.dumps({**result, **restores}))


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    asyncio.run(main(n, m))
