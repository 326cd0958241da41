"""Peak memory of reading a >= 1 GB dataset: streamed record batches against the whole table at once.

Writes a dataset of random int64 columns (incompressible, so Parquet, Arrow and the wire are all about the
same size) into a fake Foundry running in its own process, then runs three connector processes through
`connector run`, each reporting its own peak RSS: one that only imports the framework (the floor), one
that reads with `DatasetInput.iter_batches` (bounded memory), and one that calls `read_table` (memory
grows with the dataset: the baseline). Run: `python -m benchmarks.dataset_read_rss [GiB]`.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks._common import table
from framework import Connector, DatasetInput
from framework.testing import FakeFoundry, fake_process

COLUMNS = 4
ROWS_PER_FILE = 2_000_000  # 4 int64 columns: 64 MiB per file


def _peak_rss_mb() -> float:
    """VmHWM, the peak RSS of this address space. Not ru_maxrss: that survives execve, so a child would
    report the high-water mark of the forked parent (here, the process that generated the data)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best effort


class _Reader(Connector):
    data = DatasetInput("data")

    def report(self, **values: object) -> None:
        print("RESULT " + json.dumps({**values, "peak_rss_mb": _peak_rss_mb()}), flush=True)
        self.stop()


class Floor(_Reader):
    """Imports and connects, reads nothing: the memory every connector process pays."""

    async def run(self) -> None:
        await self.data.check()
        self.report(rows=0, bytes=0, seconds=0.0)


class Streamed(_Reader):
    async def run(self) -> None:
        started, rows, nbytes = time.perf_counter(), 0, 0
        async for batch in self.data.iter_batches():
            rows += batch.num_rows
            nbytes += batch.nbytes
        self.report(rows=rows, bytes=nbytes, seconds=time.perf_counter() - started)


class WholeTable(_Reader):
    async def run(self) -> None:
        started = time.perf_counter()
        whole = await self.data.read_table()
        self.report(rows=whole.num_rows, bytes=whole.nbytes, seconds=time.perf_counter() - started)


def _random_file(path: Path) -> None:
    arrays = [
        pa.Array.from_buffers(pa.int64(), ROWS_PER_FILE, [None, pa.py_buffer(os.urandom(8 * ROWS_PER_FILE))])
        for _ in range(COLUMNS)
    ]
    pq.write_table(pa.table(arrays, names=[f"c{i}" for i in range(COLUMNS)]), path, compression="none")


async def _write_dataset(foundry: FakeFoundry, rid: str, files: int, scratch: Path) -> None:
    base = f"{foundry.url}/api/v2/datasets/{quote(rid, safe='')}"
    session, headers = foundry.session, foundry.admin_headers  # the fake's admin, as fake_process started it
    async with session.post(f"{base}/transactions", json={"transactionType": "SNAPSHOT"}, headers=headers) as resp:
        txn = (await resp.json())["rid"]
    for i in range(files):
        path = scratch / f"part-{i:03}.parquet"
        await asyncio.to_thread(_random_file, path)
        with path.open("rb") as body:
            async with session.post(
                f"{base}/files/{quote(f'data/{path.name}', safe='')}/upload",
                params={"transactionRid": txn},
                data=body,
                headers={**headers, "Content-Type": "application/octet-stream"},
            ) as resp:
                assert resp.status == 200, await resp.text()
        path.unlink()
    async with session.post(f"{base}/transactions/{txn}/commit", headers=headers) as resp:
        assert resp.status == 200, await resp.text()


async def _run(cls: str, environ: dict[str, str]) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "framework.cli",
        "run",
        f"benchmarks.dataset_read_rss:{cls}",
        env={**os.environ, **environ, "CONNECTOR_LOG_LEVEL": "WARNING"},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 1200)
    for line in out.decode().splitlines():
        if line.startswith("RESULT "):
            result: dict[str, float] = json.loads(line.removeprefix("RESULT "))
            return result
    raise RuntimeError(f"{cls} printed no result (exit {process.returncode}): {out.decode()[-2000:]}")


async def main(gib: float) -> None:
    files = max(1, round(gib * 1024 / (COLUMNS * ROWS_PER_FILE * 8 / 2**20)))
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as tmp:
        async with fake_process(Path(tmp)) as foundry:
            rid = await foundry.create_dataset("big")
            print(f"writing {files} Parquet files of {COLUMNS * ROWS_PER_FILE * 8 / 2**20:.0f} MiB...", flush=True)
            await _write_dataset(foundry, rid, files, Path(tmp))
            job = await foundry.job(inputs={"data": rid}, outputs={})
            floor = await _run("Floor", job.environ)
            streamed = await _run("Streamed", job.environ)
            whole = await _run("WholeTable", job.environ)
    size_mb = streamed["bytes"] / 2**20
    rows = [
        ("reader", "rows", "data MiB", "seconds", "MiB/s", "peak RSS MiB", "RSS vs data"),
        ("floor (no read)", "0", "0", "-", "-", f"{floor['peak_rss_mb']:.0f}", "-"),
    ]
    for name, r in (("iter_batches (streamed)", streamed), ("read_table (whole, baseline)", whole)):
        rows.append(
            (
                name,
                f"{int(r['rows']):,}",
                f"{r['bytes'] / 2**20:,.0f}",
                f"{r['seconds']:.1f}",
                f"{r['bytes'] / 2**20 / r['seconds']:,.0f}",
                f"{r['peak_rss_mb']:,.0f}",
                f"{r['peak_rss_mb'] / (r['bytes'] / 2**20):.2f}x",
            )
        )
    print(table(rows))
    print(f"streamed peak RSS is {streamed['peak_rss_mb'] / whole['peak_rss_mb']:.1%} of the whole-table read's")
    print(json.dumps({"data_mib": size_mb, "streamed": streamed, "whole": whole, "floor": floor}))
    assert streamed["rows"] == whole["rows"] == files * ROWS_PER_FILE, "a reader lost rows"


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0))
