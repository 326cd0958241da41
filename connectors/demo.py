"""`make demo`: the fake Foundry and the doubler as real processes, end to end, then what happened.

Starts `fake-stream-proxy serve` on a free port, creates the streams and a job, publishes numbers (and
one malformed record), runs `connector run connectors.doubler:Doubler` until every record is through,
stops it with SIGTERM, prints the output, the dead letters and the job's provenance, and stops the fake.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from connectors.doubler import Doubled
from framework import DeadLetter
from framework.testing import fake_process

STATE = Path(".demo-state")
NULLABLE_X = {"fields": [{"name": "x", "schema": {"nullable": True, "dataType": {"type": "long"}}}]}
COUNT = 20


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


async def stop(process: asyncio.subprocess.Process, timeout_s: float = 15) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), timeout_s)


async def main() -> int:
    shutil.rmtree(STATE, ignore_errors=True)
    say("starting the fake Foundry: fake-stream-proxy serve --port 0")
    connector: asyncio.subprocess.Process | None = None
    try:
        async with fake_process(STATE, echo=True) as foundry:
            say("creating streams numbers (3 partitions), doubled, dead_letters and a job")
            # The upstream schema lets x be null; the connector's model does not: such records are
            # dead-lettered with their offsets instead of crashing the connector or vanishing.
            numbers = await foundry.create_stream("numbers", schema=NULLABLE_X, partitions=3)
            doubled = await foundry.create_stream("doubled", Doubled)
            dead = await foundry.create_stream("dead_letters", DeadLetter)
            job = await foundry.job(inputs={"numbers": numbers}, outputs={"doubled": doubled, "dead_letters": dead})
            print(f"job {job.rid}\nalias map {job.alias_map}")

            say(f"publishing x = 1..{COUNT} and one record the model rejects: {{'x': null}}")
            await foundry.publish(numbers, [{"x": i} for i in range(1, COUNT + 1)] + [{"x": None}])

            say("connector run connectors.doubler:Doubler")
            environ = {**os.environ, **job.environ, "CONNECTOR_LOG_FORMAT": "console"}
            connector = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "framework.cli", "run", "connectors.doubler:Doubler", env=environ
            )
            started = time.monotonic()
            output = await foundry.wait_for_records(doubled, COUNT, timeout_s=60)
            letters = await foundry.wait_for_records(dead, 1, timeout_s=30)
            elapsed = time.monotonic() - started
            say("stopping the connector with SIGTERM (it flushes and commits first)")
            code = await stop(connector)
            print(f"connector exited with {code}")

            say(f"doubled ({len(output)} records, {elapsed:.1f}s from start)")
            values = sorted(r["value"]["twice_x"] for r in output)
            print(", ".join(str(v) for v in values))
            say("dead_letters")
            for letter in letters:
                v = letter["value"]
                print(f"{v['source']} partition {v['partition']} offset {v['offset']}: {v['error']} raw={v['raw']}")

            say("provenance of the job")
            prov = await job.provenance()
            for alias, ref in {**prov["inputs"], **prov["outputs"]}.items():
                print(f"  {alias:>13} = {ref['rid']}")
            totals: dict[tuple[str, str, str], int] = {}
            for event in prov["events"]:
                key = (event["direction"], event["operation"], event["rid"])
                totals[key] = totals.get(key, 0) + int(event.get("recordCount") or 0)
            names = {ref["rid"]: alias for alias, ref in {**prov["inputs"], **prov["outputs"]}.items()}
            for (direction, operation, rid), records in sorted(totals.items()):
                print(f"  {direction:>5} {names.get(rid, rid):>13} via {operation}: {records} records")
            ok = values == [2 * i for i in range(1, COUNT + 1)] and len(letters) == 1 and code == 0
            say("demo OK" if ok else "demo FAILED")
            return 0 if ok else 1
    finally:
        if connector is not None and connector.returncode is None:
            connector.kill()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
