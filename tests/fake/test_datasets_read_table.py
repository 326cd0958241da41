"""readTable over real sockets: views across transactions, columns, limits, CSV, streaming, failures."""

from __future__ import annotations

import aiohttp
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from tests.conftest import Admin
from tests.fake.dataset_helpers import (
    close_txn,
    ds,
    list_files,
    open_txn,
    parquet_bytes,
    read_table,
    table,
    upload,
    write_table,
)


async def test_read_table_follows_snapshot_and_append_sequence(admin: Admin) -> None:
    rid = (await admin.create("dataset", "d"))["rid"]
    t1 = await write_table(admin, rid, "SNAPSHOT", {"part-0.parquet": table(0, 10)})
    assert (await read_table(admin, rid)).equals(table(0, 10))

    t2 = await write_table(admin, rid, "APPEND", {"part-1.parquet": table(10, 5), "sub/part-2.parquet": table(15, 5)})
    got = await read_table(admin, rid)
    assert got.sort_by("id").equals(table(0, 20))

    t3 = await write_table(admin, rid, "SNAPSHOT", {"fresh.parquet": table(100, 3)})
    assert (await read_table(admin, rid)).equals(table(100, 3))
    assert await list_files(admin, rid) == ["fresh.parquet"]

    # History stays readable through transaction ranges.
    assert (await read_table(admin, rid, endTransactionRid=t1)).equals(table(0, 10))
    assert (await read_table(admin, rid, endTransactionRid=t2)).sort_by("id").equals(table(0, 20))
    only_t2 = await read_table(admin, rid, startTransactionRid=t2, endTransactionRid=t2)
    assert only_t2.sort_by("id").equals(table(10, 10))
    assert sorted(await list_files(admin, rid, startTransactionRid=t1, endTransactionRid=t2)) == [
        "part-0.parquet", "part-1.parquet", "sub/part-2.parquet",
    ]  # fmt: skip
    assert await list_files(admin, rid, endTransactionRid=t3) == ["fresh.parquet"]

    # Column selection (repeated, as the SDK sends it, or comma-separated), row limits, CSV.
    await write_table(admin, rid, "APPEND", {"more.parquet": table(103, 4)})
    status, raw = await admin.call(
        "GET", ds(rid, "readTable"), params=[("format", "ARROW"), ("columns", "name"), ("columns", "id")]
    )
    assert status == 200 and pa.ipc.open_stream(raw).read_all().column_names == ["name", "id"]
    assert (await read_table(admin, rid, columns="name")).column_names == ["name"]
    assert (await read_table(admin, rid, rowLimit="5")).num_rows == 5
    assert (await read_table(admin, rid, rowLimit="0")).num_rows == 0
    status, raw = await admin.call("GET", ds(rid, "readTable"), params={"format": "CSV"})
    assert status == 200
    csv = pacsv.read_csv(pa.BufferReader(raw))
    assert csv.column("id").to_pylist() == [100, 101, 102, 103, 104, 105, 106]

    status, body = await admin.call("GET", ds(rid, "readTable"), params={"format": "ARROW", "columns": "missing"})
    assert status == 400 and "missing" in body["parameters"]["message"]
    status, body = await admin.call("GET", ds(rid, "readTable"), params={"format": "JSON"})
    assert status == 400


async def test_read_table_streams_many_batches_and_files(admin: Admin) -> None:
    rid = (await admin.create("dataset", "big"))["rid"]
    txn = await open_txn(admin, rid, "SNAPSHOT")
    for i in range(3):
        await upload(
            admin, rid, f"part-{i}.parquet", parquet_bytes(table(i * 100_000, 100_000), 30_000), transactionRid=txn
        )
    # Non-data files are not part of the table.
    await upload(admin, rid, "_SUCCESS", b"", transactionRid=txn)
    await upload(admin, rid, "notes.txt", b"not a table", transactionRid=txn)
    await close_txn(admin, rid, txn)
    got = await read_table(admin, rid)
    assert got.num_rows == 300_000
    assert got.column("id").to_pylist() == list(range(300_000))
    limited = await read_table(admin, rid, rowLimit="150001")
    assert limited.column("id").to_pylist() == list(range(150_001))


async def test_csv_files_and_empty_views(admin: Admin) -> None:
    rid = (await admin.create("dataset", "csvs"))["rid"]
    empty = await read_table(admin, rid)
    assert empty.num_rows == 0 and empty.num_columns == 0
    await write_table(admin, rid, "SNAPSHOT", {})
    txn = await open_txn(admin, rid, "APPEND")
    await upload(admin, rid, "a.csv", b"id,name\n1,x\n2,y\n", transactionRid=txn)
    await close_txn(admin, rid, txn)
    got = await read_table(admin, rid)
    assert got.column("id").to_pylist() == [1, 2] and got.column("name").to_pylist() == ["x", "y"]


async def test_a_mid_stream_failure_breaks_the_connection(admin: Admin) -> None:
    """Headers are sent before the data: a later failure must not look like a complete, shorter table."""
    rid = (await admin.create("dataset", "d"))["rid"]
    await write_table(admin, rid, "SNAPSHOT", {"a.parquet": table(0, 100_000)})
    # Same column, but values that cannot be cast to the first file's int64.
    await write_table(admin, rid, "APPEND", {"b.parquet": pa.table({"id": ["x"] * 3, "name": ["y"] * 3})})
    with pytest.raises(aiohttp.ClientPayloadError):
        await read_table(admin, rid)
    events = (await admin.provenance(""))["events"]
    read = [e for e in events if e["operation"] == "readTable"][-1]
    assert read["complete"] is False and read["recordCount"] == 100_000
    # The fake itself is fine.
    assert (await read_table(admin, rid, rowLimit="10")).num_rows == 10
