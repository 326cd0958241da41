"""Doubler throughput: the framework against the hand-written loop of Foundry's docs, same fake, same run.

The baseline is the docs' pattern: blocking HTTP, one GET of input records, then one POST per output record
to `jsonRecord`, minus its `sleep(60)` (which would make any comparison meaningless) and plus an offset
cursor on getRecords: the docs' `GET .../records` returns only the latest records, so as written it can
never see them all (it silently skips data under load). It reads a single partition, the best case for it.
Both run as separate processes against a fake in a third process; the figure is records per second from
the first input record to the last output record. Run: `python -m benchmarks.stream_throughput [N]`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import table
from connectors.doubler import Doubled, Number
from framework import DeadLetter
from framework.testing import FakeFoundry, fake_process

BASELINE = r"""
import json, sys, urllib.request
base, token, src, dst, count = sys.argv[1:6]
headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
def call(method, path, body=None):
    req = urllib.request.Request(base + path, data=body, headers=headers, method=method)
    with urllib.request.urlopen(req) as resp:
        return resp.read()
offset = 0
while offset < int(count):
    page = (f"/api/v2/highScale/streams/datasets/{src}/streams/master/getRecords"
            f"?partitionId=0&startOffset={offset}&limit=1000&preview=true")
    for record in json.loads(call("GET", page)):
        out = {"twice_x": int(record["value"]["x"]) * 2}
        call("POST", f"/stream-proxy/api/streams/{dst}/branches/master/jsonRecord", json.dumps(out).encode())
        offset = int(record["offset"]) + 1
"""


async def _run_framework(foundry: FakeFoundry, count: int) -> float:
    numbers = await foundry.create_stream("numbers", Number, partitions=3)
    doubled = await foundry.create_stream("doubled", Doubled)
    dead = await foundry.create_stream("dead_letters", DeadLetter)
    job = await foundry.job(inputs={"numbers": numbers}, outputs={"doubled": doubled, "dead_letters": dead})
    await foundry.publish(numbers, [{"x": i} for i in range(count)])
    env = {**os.environ, **job.environ, "CONNECTOR_LOG_LEVEL": "WARNING", "CONNECTOR_PUBLISH_BATCH_SIZE": "1000"}
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framework.cli", "run", "connectors.doubler:Doubler", env=env
    )
    try:
        await foundry.wait_for_records(doubled, count, timeout_s=600)
        return time.perf_counter() - started
    finally:
        process.terminate()
        await process.wait()


async def _run_baseline(foundry: FakeFoundry, count: int) -> float:
    numbers = await foundry.create_stream("numbers-baseline", Number)
    doubled = await foundry.create_stream("doubled-baseline", Doubled)
    job = await foundry.job(inputs={"numbers": numbers}, outputs={"doubled": doubled})
    await foundry.publish(numbers, [{"x": i} for i in range(count)])
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BASELINE, foundry.url, job.token, numbers, doubled, str(count)
    )
    await asyncio.wait_for(process.wait(), 600)
    elapsed = time.perf_counter() - started
    assert len(await foundry.records(doubled)) == count, "baseline lost records"
    return elapsed


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        async with fake_process(Path(tmp)) as foundry:
            baseline = await _run_baseline(foundry, count)
            ours = await _run_framework(foundry, count)
    rows = [
        ("implementation", "records", "seconds", "records/s", "ratio"),
        ("docs' hand-written loop", str(count), f"{baseline:.2f}", f"{count / baseline:,.0f}", "1.00x"),
        ("framework doubler", str(count), f"{ours:.2f}", f"{count / ours:,.0f}", f"{baseline / ours:.2f}x"),
    ]
    print(table(rows))
    print(json.dumps({"baseline_rps": count / baseline, "framework_rps": count / ours, "ratio": baseline / ours}))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))
