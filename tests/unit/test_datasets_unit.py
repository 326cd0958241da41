"""Dataset handles against aioresponses: commit ordering, abort paths, splitting, buffered appends, stale 409s."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime

import aiohttp
import pyarrow as pa
import pytest
from aioresponses import aioresponses
from pydantic import BaseModel

from framework._datasets.arrow import schema_for, to_table
from framework._datasets.handles import DatasetInput, DatasetOutput
from framework._datasets.ipc import arrow_batches
from framework._errors import BadRequestError, ConfigError, ConnectorError, RecordValidationError
from framework._handles import AckTracker
from framework._http import FoundryClient, RetryPolicy

from .dataset_mocks import BASE, Foundry, bind

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def retry_policy() -> RetryPolicy:
    return RetryPolicy(max_attempts=1)


@pytest.fixture
def foundry() -> Iterator[Foundry]:
    with aioresponses() as m:
        yield Foundry(m)


class Item(BaseModel):
    id: int
    name: str


def items(n: int, start: int = 0) -> list[Item]:
    return [Item(id=i, name=f"item-{i}") for i in range(start, start + n)]


async def test_commit_only_after_every_split_upload(client: FoundryClient, foundry: Foundry) -> None:
    foundry.upload_delay = 0.02
    out = bind(DatasetOutput("out", model=Item, max_file_bytes=2_000, max_concurrent_uploads=2), client)
    files = await out.write_table(items(1000), mode="snapshot")
    assert len(files) > 3 and len(set(foundry.uploads)) == len(files)
    kinds = foundry.kinds()
    assert kinds[0] == "create" and foundry.events[0][1] == "SNAPSHOT"
    assert kinds[-1] == "commit" and kinds.count("commit") == 1 and kinds[1:-1] == ["upload"] * len(files)
    assert foundry.max_in_flight == 2  # concurrent, but bounded
    assert sorted(r["id"] for r in foundry.rows()) == list(range(1000))
    assert all(re.fullmatch(r"part-\d{8}T\d{12}Z-[0-9a-f]{32}\.parquet", p) for p in foundry.uploads)


async def test_failed_upload_aborts_and_fails_the_ack(client: FoundryClient, foundry: Foundry) -> None:
    out = bind(DatasetOutput("out", max_concurrent_uploads=1), client)
    foundry.fail_upload = "bad"
    tracker = AckTracker()
    with tracker.active(), pytest.raises(ConnectorError, match="failed upload"):
        async with out.transaction() as tx:
            await tx.upload_file("good.csv", b"a,b\n")
            with pytest.raises(BadRequestError):
                await tx.upload_file("bad.csv", b"x")
            # The caller swallowed the error: the transaction must still not commit.
    assert "commit" not in foundry.kinds() and foundry.kinds()[-1] == "abort"
    with pytest.raises(ConnectorError):
        await tracker.wait()


async def test_exception_and_cancellation_abort(client: FoundryClient, foundry: Foundry) -> None:
    out = bind(DatasetOutput("out"), client)
    with pytest.raises(ValueError):
        async with out.transaction("append") as tx:
            await tx.write_table(pa.table({"x": [1]}))
            raise ValueError("boom")
    assert foundry.kinds() == ["create", "upload", "abort"]

    foundry.upload_delay = 10
    foundry.upload_started.clear()
    task = asyncio.create_task(out.write_table(pa.table({"x": [1]})))
    await asyncio.wait_for(foundry.upload_started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert foundry.kinds()[-1] == "abort" and foundry.kinds().count("commit") == 0


async def test_stale_open_transaction_is_aborted_then_retried(client: FoundryClient, foundry: Foundry) -> None:
    foundry.conflicts = 1
    old = "ri.foundry.main.transaction.old"
    foundry.mock.get(f"{BASE}/branches/master", payload={"name": "master", "transactionRid": old})
    foundry.mock.get(f"{BASE}/transactions/{old}", payload=Foundry.tx(old))
    out = bind(DatasetOutput("out"), client)
    await out.write_table(pa.table({"x": [1, 2]}))
    assert foundry.events == [
        ("create", "409"),
        ("abort", "ri.foundry.main.transaction.old"),
        ("create", "APPEND"),
        ("upload", foundry.events[3][1]),
        ("commit", "ri.foundry.main.transaction.1"),
    ]


async def test_buffered_append_flushes_by_rows_and_acks_on_commit(client: FoundryClient, foundry: Foundry) -> None:
    out = bind(DatasetOutput("out", model=Item, flush_rows=5, flush_interval_s=60), client)
    first, second = AckTracker(), AckTracker()
    with first.active():
        await out.append(items(3))
    assert foundry.events == [] and out.pending_rows == 3
    with second.active():
        await out.append([i.model_dump() for i in items(3, start=3)])  # dicts validate through the model
    assert out.pending_rows == 0
    await asyncio.wait_for(asyncio.gather(first.wait(), second.wait()), 5)
    assert foundry.kinds() == ["create", "upload", "commit"]  # one transaction for both calls
    assert [r["id"] for r in foundry.rows()] == list(range(6))
    await out.close()


async def test_buffered_append_flushes_by_time(client: FoundryClient, foundry: Foundry) -> None:
    out = bind(DatasetOutput("out", flush_rows=1000, flush_interval_s=0.05), client)
    tracker = AckTracker()
    with tracker.active():
        await out.append([{"x": 1}])
        await out.append(pa.table({"x": [2]}))
    assert foundry.events == []
    await asyncio.wait_for(tracker.wait(), 5)
    assert foundry.kinds() == ["create", "upload", "commit"]
    assert foundry.rows() == [{"x": 1}, {"x": 2}]


async def test_buffered_append_ack_fails_when_commit_fails(client: FoundryClient, foundry: Foundry) -> None:
    foundry.commit_status = 400
    out = bind(DatasetOutput("out"), client)
    tracker = AckTracker()
    with tracker.active():
        await out.append([{"x": 1}])
    with pytest.raises(BadRequestError):
        await out.flush()
    with pytest.raises(BadRequestError):
        await tracker.wait()
    assert foundry.kinds() == ["create", "upload", "commit", "abort"]

    foundry.commit_status = 200  # the next flush is a new transaction and succeeds
    await out.append([{"x": 2}])
    await out.flush()
    assert foundry.kinds()[-1] == "commit"


async def test_background_flush_failure_is_reported_to_the_next_caller(client: FoundryClient, foundry: Foundry) -> None:
    """A `run()` connector never awaits acks: a failed timer flush must surface, not exit cleanly."""
    foundry.commit_status = 400
    out = bind(DatasetOutput("out", flush_rows=1), client)
    await out.append([{"x": 1}])  # reaches flush_rows: flushed in the background, outside any tracker
    assert out._flushing is not None
    await asyncio.wait([out._flushing])
    with pytest.raises(BadRequestError):
        await out.append([{"x": 2}])
    foundry.commit_status = 200
    await out.append([{"x": 3}])  # reported once: the output goes on
    await out.flush()
    assert foundry.kinds()[-1] == "commit"


async def test_close_drops_buffer_and_aborts_open_transaction(client: FoundryClient, foundry: Foundry) -> None:
    out = bind(DatasetOutput("out"), client)
    tracker = AckTracker()
    with tracker.active():
        await out.append([{"x": 1}])
    entered = asyncio.Event()

    async def writer() -> None:
        async with out.transaction() as tx:
            await tx.upload_file("a.bin", b"1")
            entered.set()
            await asyncio.sleep(0.2)

    task = asyncio.create_task(writer())
    await asyncio.wait_for(entered.wait(), 5)
    await out.close()
    with pytest.raises(ConnectorError, match="closed before"):
        await tracker.wait()
    with pytest.raises(ConnectorError, match="aborted before it could commit"):
        await task
    assert foundry.kinds() == ["create", "upload", "abort"]


async def test_invalid_records_and_settings_are_rejected(client: FoundryClient, foundry: Foundry) -> None:
    out = bind(DatasetOutput("out", model=Item), client)
    with pytest.raises(RecordValidationError, match="id: Input should be a valid integer") as bad:
        await out.append([{"id": 1, "name": "ok"}, {"id": "not a number", "name": "x"}])
    assert bad.value.raw == {"id": "not a number", "name": "x"} and bad.value.alias == "out"
    assert out.pending_rows == 0  # nothing of a batch with an invalid record is buffered
    with pytest.raises(ConfigError):
        DatasetOutput("out", mode="update")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        DatasetOutput("out", flush_rows=0)


async def test_iter_batches_and_read_table(client: FoundryClient) -> None:
    table = pa.table({"id": list(range(10_000))})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=1000):
            writer.write_batch(batch)
    reader = bind(DatasetInput("in", chunk_bytes=4096), client)
    with aioresponses() as mock:
        pattern = re.compile(rf"^{re.escape(BASE)}/readTable\?")
        mock.get(pattern, body=sink.getvalue(), content_type="application/octet-stream", repeat=True)
        batches = [b async for b in reader.iter_batches(columns=["id", "x"], row_limit=5)]
        assert len(batches) == 10 and sum(b.num_rows for b in batches) == 10_000
        assert (await reader.read_table()).equals(table)
        (call, *_) = next(v for k, v in mock.requests.items() if k[0] == "GET")
        assert call.kwargs["params"] == [
            ("format", "ARROW"), ("branchName", "master"), ("columns", "id"), ("columns", "x"), ("rowLimit", "5")
        ]  # fmt: skip


async def test_list_files_pages_and_check(client: FoundryClient) -> None:
    reader = bind(DatasetInput("in"), client)
    f = {"transactionRid": "t", "sizeBytes": 3, "updatedTime": "2024-01-01T00:00:00Z"}
    with aioresponses() as mock:
        files = re.compile(rf"^{re.escape(BASE)}/files\?")
        mock.get(files, payload={"data": [{"path": "a", **f}], "nextPageToken": "p2"})
        mock.get(files, payload={"data": [{"path": "b", **f}]})
        listed = [x async for x in reader.list_files()]
        assert [x.path for x in listed] == ["a", "b"] and listed[0].size_bytes == 3
        assert listed[0].updated_time == datetime(2024, 1, 1, tzinfo=UTC)
        mock.get(files, status=404, payload={"errorCode": "NOT_FOUND", "errorName": "BranchNotFound"})
        with pytest.raises(ConfigError, match="not reachable: BranchNotFound") as err:
            await reader.check()
        assert "\n" not in str(err.value)


def test_arrow_schema_from_model() -> None:
    class Inner(BaseModel):
        a: int
        tags: list[str] = []

    class Everything(BaseModel):
        i: int
        s: str
        f: float
        b: bool
        ts: datetime
        d: date
        raw: bytes
        opt: int | None = None
        nums: list[float | None]
        inner: Inner
        many: list[Inner] | None = None
        attrs: dict[str, int]

    schema = schema_for(Everything)
    assert [(f.name, str(f.type), f.nullable) for f in schema][:8] == [
        ("i", "int64", False), ("s", "string", False), ("f", "double", False), ("b", "bool", False),
        ("ts", "timestamp[us, tz=UTC]", False), ("d", "date32[day]", False), ("raw", "binary", False),
        ("opt", "int64", True),
    ]  # fmt: skip
    assert schema.field("inner").type == pa.struct([pa.field("a", pa.int64(), False),
                                                    pa.field("tags", pa.list_(pa.field("item", pa.string(), False)),
                                                             False)])  # fmt: skip
    assert schema.field("many").nullable and schema.field("attrs").type.item_field.nullable is False
    row = Everything(i=1, s="s", f=1.5, b=True, ts=datetime(2024, 1, 1, tzinfo=UTC), d=date(2024, 1, 2), raw=b"x",
                     nums=[1.0, None], inner=Inner(a=1), attrs={"k": 2})  # fmt: skip
    table = to_table([row], model=Everything)
    assert table.schema == schema and table.to_pylist()[0]["inner"] == {"a": 1, "tags": []}
    with pytest.raises(ConfigError, match="no Arrow type"):

        class Bad(BaseModel):
            x: object

        schema_for(Bad)


async def test_arrow_batches_decodes_in_bounded_memory() -> None:
    table = pa.table({"id": list(range(200_000)), "s": [str(i) for i in range(200_000)]})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=50_000):  # each message is larger than the buffer below
            writer.write_batch(batch)
    data = sink.getvalue()
    sent = 0

    async def chunks(fail_at: int | None = None) -> AsyncIterator[bytes]:
        nonlocal sent
        for start in range(0, len(data), 32 * 1024):
            if fail_at is not None and start >= fail_at:
                raise aiohttp.ClientPayloadError("connection lost")
            sent = start
            yield data[start : start + 32 * 1024]

    got = [b async for b in arrow_batches(chunks(), max_buffer_bytes=64 * 1024)]
    assert pa.Table.from_batches(got).equals(table)

    async for _ in arrow_batches(chunks(), max_buffer_bytes=64 * 1024):
        break  # the download stops soon after: never read far ahead of the consumer
    assert sent < len(data) // 2

    with pytest.raises(aiohttp.ClientPayloadError):
        async for _ in arrow_batches(chunks(fail_at=len(data) // 2)):
            pass

    async def empty() -> AsyncIterator[bytes]:
        return
        yield b""

    assert [b async for b in arrow_batches(empty())] == []


async def test_buffered_append_flushes_by_bytes_with_one_flush_in_flight(
    client: FoundryClient, foundry: Foundry
) -> None:
    foundry.upload_delay = 0.05
    out = bind(DatasetOutput("out", flush_rows=10**9, flush_bytes=1000, flush_interval_s=60), client)
    await out.append(pa.table({"x": list(range(200))}))  # 1600 bytes: over the threshold, flushed in background
    assert out.pending_rows == 0 and "commit" not in foundry.kinds()
    await out.append(pa.table({"x": list(range(200, 400))}))  # waits for the first flush (backpressure)
    assert foundry.kinds() == ["create", "upload", "commit"]
    await out.flush()
    assert foundry.kinds() == ["create", "upload", "commit"] * 2
    assert [r["x"] for r in foundry.rows()] == list(range(400))
