"""The connector's figures, each against a baseline measured in the same run, on the project's fake (own process).

- drain: the doubler draining a backlog of 100k records (4 input partitions for everyone) against the
  hand-tuned asyncio client of `benchmarks.clients` (the ceiling) and the docs' hand-written loop. Timed from
  ready (the connector's /ready, the client's `ready` line) to the output's end offsets reaching the count;
  from the spawn too, for the framework. CPU per record of the connector / client over the timed phase.
- latency: 5,000 records/s offered to a running connector with default settings, p50 / p99 / max from publish
  to the output record being readable (the output tailed from a cursor every 5 ms), against the ceiling.
- rss: the connector's peak RSS draining 100k and 1M records.
- workers: a CPU-heavy transform (~50 us per record, `benchmarks.heavy`) on 4 partitions, 2 workers against 1.

Run: `python -m benchmarks.connector_suite [--code PATH]` (PATH: the code the connector runs, default this
tree; the fake and the baselines are always this tree's). Results go to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks._common import table
from benchmarks.procs import ROOT, Running, start_client, start_connector, wait_for_count
from connectors.doubler import Doubled, Number
from framework import DeadLetter
from framework.testing import FakeFoundry, Job, fake_process

PARTITIONS = 4
RESULTS = Path(__file__).parent / "results"
DOUBLER = "connectors.doubler:Doubler"


class Suite:
    def __init__(self, foundry: FakeFoundry, code: Path) -> None:
        self.foundry, self.code = foundry, code
        self.streams = 0

    async def streams_and_job(self) -> tuple[str, str, Job]:
        self.streams += 1
        n = self.streams
        numbers = await self.foundry.create_stream(f"numbers-{n}", Number, partitions=PARTITIONS)
        doubled = await self.foundry.create_stream(f"doubled-{n}", Doubled)
        dead = await self.foundry.create_stream(f"dead-{n}", DeadLetter)
        job = await self.foundry.job(inputs={"numbers": numbers}, outputs={"doubled": doubled, "dead_letters": dead})
        return numbers, doubled, job

    async def backlog(self, rid: str, count: int) -> None:
        path = self.foundry.stream_path(rid, "/publishRecords")
        for start in range(0, count, 1000):
            body = orjson.dumps({"records": [{"x": i} for i in range(start, min(count, start + 1000))]})
            headers = {**self.foundry.admin_headers, "Content-Type": "application/json"}
            async with self.foundry.session.post(f"{self.foundry.url}{path}", data=body, headers=headers) as resp:
                assert resp.status < 300, await resp.text()

    async def start(self, kind: str, job: Job, src: str, dst: str, workers: int = 1) -> Running:
        if kind in ("docs", "ceiling"):
            return await start_client(kind, self.foundry, job, src, dst, PARTITIONS)
        code = self.code if kind == "framework" else ROOT
        spec = DOUBLER if kind == "framework" else "benchmarks.heavy:HeavyDoubler"
        return await start_connector(job, code, spec, workers=workers)

    async def drain(self, kind: str, count: int, workers: int = 1) -> dict[str, float]:
        src, dst, job = await self.streams_and_job()
        await self.backlog(src, count)
        running = await self.start(kind, job, src, dst, workers)
        try:
            cpu = running.cpu()
            done = await wait_for_count(self.foundry, dst, count)
            cpu = running.cpu() - cpu
            rss = running.rss_mb()
        finally:
            await running.stop()
        seconds = done - running.ready_at
        return {
            "records": count,
            "seconds": seconds,
            "rps": count / seconds,
            "rps_from_spawn": count / (done - running.spawned_at),
            "cpu_us_per_record": cpu / count * 1e6,
            "peak_rss_mb": rss,
        }

    async def latency(self, kind: str, rate: int = 5000, seconds: float = 5.0) -> dict[str, float]:
        src, dst, job = await self.streams_and_job()
        running = await self.start(kind, job, src, dst)
        sent: dict[int, float] = {}
        seen: list[float] = []
        tick, per_tick = 0.01, max(1, int(rate * 0.01))
        total = int(rate * seconds) // per_tick * per_tick
        warmup = rate  # the first second is not counted
        headers = {**self.foundry.admin_headers, "Content-Type": "application/json"}
        session, url = self.foundry.session, self.foundry.url

        async def produce() -> None:
            path = url + self.foundry.stream_path(src, "/publishRecords")
            started = time.perf_counter()
            for i, first in enumerate(range(0, total, per_tick)):
                await asyncio.sleep(max(0.0, started + i * tick - time.perf_counter()))
                now = time.perf_counter()
                sent.update(dict.fromkeys(range(first, first + per_tick), now))
                body = orjson.dumps({"records": [{"x": x} for x in range(first, first + per_tick)]})
                async with session.post(path, data=body, headers=headers) as resp:
                    assert resp.status < 300

        async def tail() -> None:
            path, offset, got = url + self.foundry.stream_path(dst, "/getRecords"), 0, 0
            deadline = time.perf_counter() + seconds + 30
            while got < total and time.perf_counter() < deadline:
                params = {"partitionId": "0", "startOffset": str(offset), "limit": "1000", "preview": "true"}
                async with session.get(path, params=params, headers=self.foundry.admin_headers) as resp:
                    page = orjson.loads(await resp.read())
                now = time.perf_counter()
                for record in page:
                    x = record["value"]["twice_x"] // 2
                    if x >= warmup:
                        seen.append(now - sent[x])
                got += len(page)
                offset = page[-1]["offset"] + 1 if page else offset
                if not page:
                    await asyncio.sleep(0.005)

        try:
            await asyncio.gather(produce(), tail())
        finally:
            await running.stop()
        seen.sort()
        q = statistics.quantiles(seen, n=100)
        return {"offered_rps": rate, "p50_ms": q[49] * 1e3, "p99_ms": q[98] * 1e3, "max_ms": seen[-1] * 1e3}


async def run(code: Path, count: int, big: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-connector-") as tmp:
        async with fake_process(Path(tmp)) as foundry:
            suite = Suite(foundry, code)
            out: dict[str, Any] = {"code": str(code), "records": count, "partitions": PARTITIONS}
            out["drain_ceiling"] = await suite.drain("ceiling", count)
            out["drain_framework"] = await suite.drain("framework", count)
            out["drain_docs"] = await suite.drain("docs", 2000)
            out["latency_ceiling"] = await suite.latency("ceiling")
            out["latency_framework"] = await suite.latency("framework")
            out["drain_framework_big"] = await suite.drain("framework", big)
            if (code / "framework" / "_workers.py").exists():
                out["heavy_1"] = await suite.drain("heavy", 40_000)
                out["heavy_2"] = await suite.drain("heavy", 40_000, workers=2)
    return out


def report(r: dict[str, Any]) -> str:
    c, f, d = r["drain_ceiling"], r["drain_framework"], r["drain_docs"]
    lc, lf = r["latency_ceiling"], r["latency_framework"]
    big = r["drain_framework_big"]
    rows = [
        ("figure", "framework", "baseline", "ratio"),
        ("drain vs hand-tuned client, rec/s", f"{f['rps']:,.0f}", f"{c['rps']:,.0f}", f"{f['rps'] / c['rps']:.2f}x"),
        ("  (framework from spawn)", f"{f['rps_from_spawn']:,.0f}", "", f"{f['rps_from_spawn'] / c['rps']:.2f}x"),
        ("drain vs docs' loop, rec/s", f"{f['rps']:,.0f}", f"{d['rps']:,.0f}", f"{f['rps'] / d['rps']:.1f}x"),
        ("CPU us/record", f"{f['cpu_us_per_record']:.2f}", f"{c['cpu_us_per_record']:.2f}",
         f"{f['cpu_us_per_record'] / c['cpu_us_per_record']:.2f}x"),
        ("latency p50 ms @5k/s", f"{lf['p50_ms']:.1f}", f"{lc['p50_ms']:.1f}", f"{lf['p50_ms'] / lc['p50_ms']:.2f}x"),
        ("latency p99 ms @5k/s", f"{lf['p99_ms']:.1f}", f"{lc['p99_ms']:.1f}", f"{lf['p99_ms'] / lc['p99_ms']:.2f}x"),
        ("latency max ms @5k/s", f"{lf['max_ms']:.1f}", f"{lc['max_ms']:.1f}", ""),
        (f"peak RSS MB {f['records']:,} vs {big['records']:,}", f"{big['peak_rss_mb']:.0f}", f"{f['peak_rss_mb']:.0f}",
         f"{big['peak_rss_mb'] / f['peak_rss_mb']:.2f}x"),
    ]  # fmt: skip
    if "heavy_2" in r:
        h1, h2 = r["heavy_1"], r["heavy_2"]
        rows.append(("heavy transform, 2 workers vs 1, rec/s", f"{h2['rps']:,.0f}", f"{h1['rps']:,.0f}",
                     f"{h2['rps'] / h1['rps']:.2f}x"))  # fmt: skip
    return table(rows)


async def main(code: Path = ROOT, count: int = 100_000, big: int = 1_000_000) -> dict[str, Any]:
    result = await run(code, count, big)
    print(report(result), flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"connector-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"results: {out}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--code", type=Path, default=ROOT)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    args = parser.parse_args()
    asyncio.run(main(args.code.resolve(), args.records, args.big))
