"""The fake's own cost: publishRecords and getRecords against a minimal aiohttp server, in the same run.

The fake (`python -m fake_stream_proxy serve`, its own process, the current directory's code) and a
minimal server (its own process: parses the same JSON body with `request.json()` and answers 204; for
reads, encodes a page of the same records with `json_response`) each get N records of `{"x": i}` in
batches of 1000, 4 requests in flight, from one client process. Printed per server: records/s, server CPU
seconds per record (utime + stime from /proc/PID/stat over the timed phase) and the ratio fake/minimal;
then the fake's SQLite state size per million records (file + wal after a checkpoint). Results also go to
benchmarks/results/. Run: `python -m benchmarks.fake_ingest [N] [RUNS]`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks._common import table

BATCH = 1000
IN_FLIGHT = 4
WARMUP_BATCHES = 5
# The doubler's input model (`x: int`) as the framework declares it.
SCHEMA = {"fields": [{"name": "x", "schema": {"nullable": False, "dataType": {"type": "long"}}}]}
STREAM_PATH = "/api/v2/highScale/streams/datasets/{rid}/streams/master"
RESULTS = Path(__file__).parent / "results"

MINIMAL = r"""
import asyncio, sys
from aiohttp import web

async def publish(request):
    await request.json()
    return web.Response(status=204)

async def get_records(request):
    start, limit = int(request.query["startOffset"]), int(request.query["limit"])
    return web.json_response([{"offset": o, "value": {"x": o}} for o in range(start, start + limit)])

async def main():
    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.router.add_post("/api/v2/highScale/streams/datasets/{rid}/streams/{branch}/publishRecords", publish)
    app.router.add_get("/api/v2/highScale/streams/datasets/{rid}/streams/{branch}/getRecords", get_records)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"minimal listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@dataclass
class Phase:
    records: int
    seconds: float
    cpu_s: float

    @property
    def rps(self) -> float:
        return self.records / self.seconds

    @property
    def cpu_us_per_record(self) -> float:
        return self.cpu_s / self.records * 1e6


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (fields 14 and 15 of /proc/PID/stat, after the parenthesised name)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A server process started with `args`; `url` from the first line it prints."""

    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process = process
        self.url = url

    @classmethod
    async def start(cls, *args: str) -> Server:
        process = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        match = re.search(r"http://[\w.]+:\d+", line)
        if match is None:
            process.kill()
            raise RuntimeError(f"{args} did not start: {line!r}")
        return cls(process, match.group(0))

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def _timed(server: Server, count: int, send: Callable[[int], Awaitable[None]]) -> Phase:
    """`send(batch_index)` for every batch, IN_FLIGHT at a time, timing the wall clock and the server's CPU."""
    batches = iter(range(count // BATCH))

    async def worker() -> None:
        for index in batches:
            await send(index)

    cpu, started = cpu_seconds(server.process.pid), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    elapsed = time.perf_counter() - started
    return Phase(count // BATCH * BATCH, elapsed, cpu_seconds(server.process.pid) - cpu)


async def _ingest(session: aiohttp.ClientSession, server: Server, path: str, count: int, token: str) -> Phase:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    bodies = [
        json.dumps({"records": [{"x": i} for i in range(b * BATCH, (b + 1) * BATCH)]}).encode()
        for b in range(count // BATCH)
    ]

    async def send(index: int) -> None:
        async with session.post(f"{server.url}{path}/publishRecords", data=bodies[index], headers=headers) as resp:
            if resp.status != 204:
                raise RuntimeError(f"publishRecords -> {resp.status}: {await resp.text()}")

    for index in range(WARMUP_BATCHES):  # connections, caches and the first pages of the file
        await send(index)
    return await _timed(server, count, send)


async def _read(session: aiohttp.ClientSession, server: Server, path: str, count: int, token: str) -> Phase:
    headers = {"Authorization": f"Bearer {token}"}

    async def send(index: int) -> None:
        params = {"partitionId": "0", "startOffset": str(index * BATCH), "limit": str(BATCH), "preview": "true"}
        async with session.get(f"{server.url}{path}/getRecords", params=params, headers=headers) as resp:
            body = await resp.read()
            if resp.status != 200 or body.count(b'"offset"') != BATCH:
                raise RuntimeError(f"getRecords -> {resp.status}: {body[:200]!r}")

    return await _timed(server, count, send)


async def _admin(session: aiohttp.ClientSession, url: str, token: str, path: str, body: Any) -> Any:
    async with session.post(f"{url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{path} -> {resp.status}: {await resp.text()}")
        return await resp.json()


def state_bytes(state_dir: Path) -> int:
    """The SQLite file plus its WAL after a checkpoint (the fake has stopped)."""
    db = state_dir / "fake-foundry.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    wal = db.with_name(db.name + "-wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def run_once(count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-fake-ingest-") as tmp:
        state = Path(tmp) / "fake"
        fake = await Server.start(
            sys.executable, "-m", "fake_stream_proxy", "serve",
            "--port", "0", "--https-port", "0", "--state-dir", str(state),
        )  # fmt: skip
        minimal = await Server.start(sys.executable, "-c", MINIMAL)
        try:
            admin = (state / "admin-token").read_text().strip()
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT * 2)) as session:
                body = {"type": "stream", "name": "ingest", "partitions": 1, "schema": SCHEMA}
                rid = (await _admin(session, fake.url, admin, "/_fake/resources", body))["rid"]
                job = await _admin(session, fake.url, admin, "/_fake/jobs", {"inputs": {}, "outputs": {"out": rid}})
                path = STREAM_PATH.format(rid=rid)
                results = {
                    "fake_ingest": await _ingest(session, fake, path, count, job["token"]),
                    "minimal_ingest": await _ingest(session, minimal, path, count, job["token"]),
                    "fake_read": await _read(session, fake, path, count, admin),
                    "minimal_read": await _read(session, minimal, path, count, admin),
                }
        finally:
            await fake.stop()
            await minimal.stop()
        stored = count // BATCH * BATCH + WARMUP_BATCHES * BATCH
        phases = results.items()
        return {
            **{name: {**asdict(p), "rps": p.rps, "cpu_us_per_record": p.cpu_us_per_record} for name, p in phases},
            "ingest_ratio": results["fake_ingest"].rps / results["minimal_ingest"].rps,
            "read_ratio": results["fake_read"].rps / results["minimal_read"].rps,
            "state_mb_per_million": state_bytes(state) / stored * 1e6 / 1e6,
        }


def report(run: dict[str, Any]) -> str:
    rows = [("phase", "server", "records/s", "CPU us/record", "ratio")]
    for phase in ("ingest", "read"):
        for server, name, ratio in (("minimal", "minimal aiohttp", "1.00x"), ("fake", "fake", "")):
            got = run[f"{server}_{phase}"]
            ratio = ratio or f"{run[f'{phase}_ratio']:.3f}x"
            rows.append((phase, name, f"{got['rps']:,.0f}", f"{got['cpu_us_per_record']:.2f}", ratio))
    return table(rows) + f"\nfake state: {run['state_mb_per_million']:.1f} MB per million records"


async def main(count: int = 200_000, runs: int = 1) -> list[dict[str, Any]]:
    done = []
    for number in range(runs):
        run = await run_once(count)
        print(f"-- run {number + 1}/{runs}, {count:,} records\n{report(run)}", flush=True)
        done.append(run)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"fake_ingest-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"records": count, "cwd": os.getcwd(), "runs": done}, indent=2))
    print(f"results: {out}")
    return done


if __name__ == "__main__":
    asyncio.run(main(*(int(a) for a in sys.argv[1:3])))
