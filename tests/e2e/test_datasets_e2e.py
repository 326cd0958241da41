"""Dataset handles against the real fake over 127.0.0.1: transactions, views, streaming reads, scoping."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import BaseModel
from structlog.testing import capture_logs

from fake_stream_proxy import FakeServer
from framework._datasets.handles import DatasetInput, DatasetOutput
from framework._datasets.transactions import abort_left_open
from framework._env.environment import ResourceRef
from framework._errors import ConfigError, PermissionDeniedError
from tests.conftest import Admin

from .bound_handles import job_env

pytestmark = pytest.mark.timeout(60)


class Row(BaseModel):
    id: int
    name: str
    score: float | None = None
    at: datetime


def rows(start: int, stop: int) -> list[Row]:
    return [Row(id=i, name=f"n{i}", score=i / 2 if i % 3 else None, at=datetime(2024, 1, 1, tzinfo=UTC)) for i in
            range(start, stop)]  # fmt: skip


def ids(table: pa.Table) -> list[int]:
    return sorted(table.column("id").to_pylist())


async def _setup(admin: Admin, n_inputs: int = 1) -> tuple[str, dict[str, object]]:
    rid = (await admin.create("dataset", "archive"))["rid"]
    info = await admin.job(inputs={}, outputs={"archive": rid})
    return rid, info


async def test_read_table_follows_snapshot_and_append_sequence(tmp_path: Path, fake: FakeServer, admin: Admin) -> None:
    _, info = await _setup(admin)
    async with job_env(tmp_path, fake, info) as job:
        out = job.bind(DatasetOutput("archive", model=Row, flush_rows=1_000_000, flush_interval_s=30))
        await out.check()
        assert (await out.read_table()).num_rows == 0

        await out.write_table(rows(0, 10), mode="snapshot")
        assert ids(await out.read_table()) == list(range(10))
        await out.write_table(rows(10, 15), mode="append")
        table = await out.read_table()
        assert ids(table) == list(range(15))
        assert table.schema.field("at").type == pa.timestamp("us", tz="UTC")
        assert table.sort_by("id").slice(1, 1).to_pylist()[0]["score"] == 0.5

        await out.write_table(rows(100, 103), mode="snapshot")  # replaces everything before it
        assert ids(await out.read_table()) == [100, 101, 102]

        await out.append(rows(200, 202))
        await out.append([r.model_dump() for r in rows(202, 205)])
        assert out.pending_rows == 5
        await out.flush()
        assert ids(await out.read_table()) == [100, 101, 102, *range(200, 205)]
        assert [r.id for r in await out.read_models(Row, columns=["id", "name", "score", "at"], row_limit=2)] != []
        await out.close()


async def test_aborted_transaction_leaves_no_trace(tmp_path: Path, fake: FakeServer, admin: Admin) -> None:
    rid, info = await _setup(admin)
    async with job_env(tmp_path, fake, info) as job:
        out = job.bind(DatasetOutput("archive", model=Row))
        await out.write_table(rows(0, 3), mode="snapshot")
        before = [f async for f in out.list_files()]

        with pytest.raises(RuntimeError, match="transform failed"):
            async with out.transaction("append") as tx:
                await tx.write_table(rows(3, 6))
                await tx.upload_file("extra/notes.txt", b"half written")
                raise RuntimeError("transform failed")

        assert ids(await out.read_table()) == [0, 1, 2]
        assert [f async for f in out.list_files()] == before
        status, txn = await admin.call("GET", f"/api/v2/datasets/{rid}/transactions/{tx.rid}")
        assert status == 200, txn
        assert txn["status"] == "ABORTED"

        # Cancellation aborts too.
        started = asyncio.Event()

        async def slow_writer() -> None:
            async with out.transaction("snapshot") as tx2:
                await tx2.write_table(rows(50, 60))
                started.set()
                await asyncio.sleep(30)

        task = asyncio.create_task(slow_writer())
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ids(await out.read_table()) == [0, 1, 2]


async def test_iter_batches_over_multi_file_dataset(tmp_path: Path, fake: FakeServer, admin: Admin) -> None:
    rid, writer_info = await _setup(admin)
    reader_info = await admin.job(inputs={"source": rid}, outputs={})
    n = 20_000
    async with job_env(tmp_path, fake, writer_info, "writer") as writer:
        out = writer.bind(DatasetOutput("archive", model=Row, max_file_bytes=64 * 1024, max_concurrent_uploads=3))
        files = await out.write_table(rows(0, n), mode="snapshot")
        assert len(files) > 5
        assert len({f.path for f in files}) == len(files)
        assert all(f.path.startswith("part-") and f.path.endswith(".parquet") for f in files)
    async with job_env(tmp_path, fake, reader_info, "reader") as reader:
        source = reader.bind(DatasetInput("source"))
        await source.check()
        seen: list[int] = []
        batches = 0
        async for batch in source.iter_batches():
            seen.extend(batch.column("id").to_pylist())
            batches += 1
        assert sorted(seen) == list(range(n))
        assert batches >= 1 and source.metrics.records == n

        listed = [f async for f in source.list_files(page_size=2)]  # several pages
        assert sorted(f.path for f in listed) == sorted(f.path for f in files)
        first = listed[0]
        assert first.size_bytes and first.updated_time is not None
        whole = await source.read_file(first.path)
        streamed = b"".join([c async for c in source.open_file(first.path)])
        assert whole == streamed and len(whole) == first.size_bytes
        limited = await source.read_table(columns=["id"], row_limit=7)
        assert limited.column_names == ["id"] and limited.num_rows == 7


async def test_undeclared_datasets_are_denied(tmp_path: Path, fake: FakeServer, admin: Admin) -> None:
    declared = (await admin.create("dataset", "declared"))["rid"]
    other = (await admin.create("dataset", "other"))["rid"]
    info = await admin.job(inputs={"source": declared}, outputs={})
    async with job_env(tmp_path, fake, info) as job:
        undeclared = job.bind(DatasetInput("source"), ResourceRef(other))
        with pytest.raises(PermissionDeniedError):
            await undeclared.read_table()
        with pytest.raises(ConfigError, match="not reachable"):
            await undeclared.check()
        # An input is not writable.
        as_output = job.bind(DatasetOutput("source"), ResourceRef(declared))
        with pytest.raises(PermissionDeniedError):
            await as_output.write_table(pa.table({"x": [1]}))


async def test_stale_open_transaction_from_a_killed_run_is_aborted(
    tmp_path: Path, fake: FakeServer, admin: Admin
) -> None:
    rid, info = await _setup(admin)
    status, stale = await admin.call(
        "POST",
        f"/api/v2/datasets/{rid}/transactions",
        json={"transactionType": "APPEND"},
        params={"branchName": "master"},
    )
    assert status == 200 and stale["status"] == "OPEN"
    async with job_env(tmp_path, fake, info) as job:
        out = job.bind(DatasetOutput("archive"))
        await out.write_table(pa.table({"x": [1, 2, 3]}))
        assert (await out.read_table()).column("x").to_pylist() == [1, 2, 3]
    _, after = await admin.call("GET", f"/api/v2/datasets/{rid}/transactions/{stale['rid']}")
    assert after["status"] == "ABORTED"


async def test_workers_transactions_on_one_branch_take_turns(tmp_path: Path, fake: FakeServer, admin: Admin) -> None:
    """Two workers of one replica (CONNECTOR_WORKERS=2) write one output branch: Foundry keeps one transaction
    open per branch, so each waits for the other's to close instead of aborting it as a killed run's."""
    _, info = await _setup(admin)
    shared = {"CONNECTOR_WORKERS": "2"}
    async with (
        job_env(tmp_path, fake, info, "w0", {**shared, "CONNECTOR_WORKER_INDEX": "0"}) as w0,
        job_env(tmp_path, fake, info, "w1", {**shared, "CONNECTOR_WORKER_INDEX": "1"}) as w1,
    ):
        outs = [w.bind(DatasetOutput("archive", flush_rows=1, flush_interval_s=30)) for w in (w0, w1)]
        with capture_logs() as logs:
            await asyncio.gather(*(out.append([{"x": i * 100 + k}]) for k in range(15) for i, out in enumerate(outs)))
            for out in outs:
                await out.flush()
        assert sorted((await outs[0].read_table()).column("x").to_pylist()) == sorted(
            i * 100 + k for k in range(15) for i in range(2)
        )
        assert [e for e in logs if e["event"] == "aborting stale open transaction"] == []
        for out in outs:
            await out.close()


async def test_the_supervisor_aborts_a_transaction_a_killed_run_left_open(
    tmp_path: Path, fake: FakeServer, admin: Admin
) -> None:
    rid, info = await _setup(admin)
    async with job_env(tmp_path, fake, info) as job:
        out = job.bind(DatasetOutput("archive"))
        await abort_left_open(out)  # nothing open: nothing done
        status, stale = await admin.call(
            "POST",
            f"/api/v2/datasets/{rid}/transactions",
            json={"transactionType": "APPEND"},
            params={"branchName": "master"},
        )
        assert status == 200
        await abort_left_open(out)
        _, after = await admin.call("GET", f"/api/v2/datasets/{rid}/transactions/{stale['rid']}")
        assert after["status"] == "ABORTED"
