"""Palantir's official foundry-platform-sdk against the fake: datasets and media sets, wire-compatible.

The SDK is synchronous (httpx), so every call runs in a worker thread while the fake serves in the loop.
Typed SDK exceptions prove the error envelopes (names *and* parameters) deserialize as on Foundry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import foundry_sdk
import pyarrow as pa
import pytest
from foundry_sdk.v2.datasets import errors as ds_errors

from fake_stream_proxy import FakeServer
from tests.conftest import Admin
from tests.fake.dataset_helpers import parquet_bytes

T = TypeVar("T")

# The SDK methods this module calls against the fake (test_sdk_coverage.py collects them).
SDK_METHODS = {
    "datasets.Dataset.create", "datasets.Dataset.get", "datasets.Dataset.read_table", "datasets.Dataset.put_schema",
    "datasets.Dataset.get_schema", "datasets.Branch.create", "datasets.Branch.get", "datasets.Branch.list",
    *(f"datasets.Transaction.{m}" for m in ("create", "commit", "abort", "get")),
    *(f"datasets.File.{m}" for m in ("upload", "list", "get", "content")),
    *(f"media_sets.MediaSet.{m}" for m in ("upload", "get_rid_by_path", "info", "read", "get", "create", "commit",
                                           "abort")),
}  # fmt: skip


def client(fake: FakeServer, token: str) -> Any:
    return foundry_sdk.FoundryClient(
        auth=foundry_sdk.UserTokenAuth(token),
        hostname=f"127.0.0.1:{fake.port}",
        config=foundry_sdk.Config(scheme="http"),
    )


async def run(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def table(start: int, n: int) -> pa.Table:
    return pa.table(
        {"id": pa.array(range(start, start + n), pa.int64()), "v": [float(i) / 2 for i in range(start, start + n)]}
    )


async def test_sdk_dataset_lifecycle(fake: FakeServer) -> None:
    ds = client(fake, fake.admin_token).datasets.Dataset
    dataset = await run(lambda: ds.create(name="sdk-made", parent_folder_rid="ri.compass.main.folder.sdk"))
    rid = dataset.rid
    assert dataset.name == "sdk-made" and (await run(lambda: ds.get(rid))).rid == rid
    assert [b.name for b in await run(lambda: list(ds.Branch.list(rid)))] == ["master"]
    await run(lambda: ds.Branch.create(rid, name="dev"))
    assert (await run(lambda: ds.Branch.get(rid, "dev"))).name == "dev"
    with pytest.raises(ds_errors.BranchNotFound) as missing:
        await run(lambda: ds.Branch.get(rid, "nope"))
    assert missing.value.parameters["branchName"] == "nope"

    snap = await run(lambda: ds.Transaction.create(rid, transaction_type="SNAPSHOT"))
    assert snap.status == "OPEN" and snap.transaction_type == "SNAPSHOT"
    with pytest.raises(ds_errors.OpenTransactionAlreadyExists):
        await run(lambda: ds.Transaction.create(rid, transaction_type="APPEND"))
    uploaded = await run(
        lambda: ds.File.upload(rid, "data/part-0.parquet", parquet_bytes(table(0, 50)), transaction_rid=snap.rid)
    )
    assert uploaded.path == "data/part-0.parquet" and uploaded.transaction_rid == snap.rid and uploaded.size_bytes > 0
    committed = await run(lambda: ds.Transaction.commit(rid, snap.rid))
    assert committed.status == "COMMITTED" and committed.closed_time is not None
    with pytest.raises(ds_errors.TransactionNotOpen):
        await run(lambda: ds.Transaction.abort(rid, snap.rid))
    assert (await run(lambda: ds.Transaction.get(rid, snap.rid))).status == "COMMITTED"

    append = await run(lambda: ds.Transaction.create(rid, transaction_type="APPEND"))
    for i in (1, 2):
        upload = partial(ds.File.upload, rid, f"data/part-{i}.parquet", parquet_bytes(table(i * 50, 50)))
        await run(partial(upload, transaction_rid=append.rid))
    await run(lambda: ds.Transaction.commit(rid, append.rid))
    aborted = await run(lambda: ds.Transaction.create(rid, transaction_type="SNAPSHOT"))
    await run(lambda: ds.File.upload(rid, "junk.parquet", parquet_bytes(table(999, 1)), transaction_rid=aborted.rid))
    assert (await run(lambda: ds.Transaction.abort(rid, aborted.rid))).status == "ABORTED"

    # Listing pages through the ResourceIterator (pageSize 2 forces three requests).
    files = await run(lambda: [f.path for f in ds.File.list(rid, page_size=2)])
    assert files == ["data/part-0.parquet", "data/part-1.parquet", "data/part-2.parquet"]
    assert (await run(lambda: ds.File.get(rid, "data/part-1.parquet"))).transaction_rid == append.rid
    content = await run(lambda: ds.File.content(rid, "data/part-0.parquet"))
    assert content == parquet_bytes(table(0, 50))
    with pytest.raises(ds_errors.FileNotFoundOnBranch):
        await run(lambda: ds.File.content(rid, "junk.parquet"))
    implicit = await run(lambda: ds.File.upload(rid, "notes.txt", b"hello", branch_name="dev"))
    assert (await run(lambda: ds.Transaction.get(rid, implicit.transaction_rid))).transaction_type == "UPDATE"

    got = (await run(lambda: ds.read_table(rid, format="ARROW"))).to_pyarrow()
    assert got.sort_by("id").equals(table(0, 150))
    cols = (await run(lambda: ds.read_table(rid, format="ARROW", columns=["v", "id"], row_limit=7))).to_pyarrow()
    assert cols.column_names == ["v", "id"] and cols.num_rows == 7
    first = (await run(lambda: ds.read_table(rid, format="ARROW", end_transaction_rid=snap.rid))).to_pyarrow()
    assert first.equals(table(0, 50))
    csv = await run(lambda: ds.read_table(rid, format="CSV"))
    assert bytes(csv).splitlines()[0] == b'"id","v"'

    schema = {
        "fieldSchemaList": [
            {"name": "id", "type": "LONG", "nullable": False},
            {"name": "v", "type": "DOUBLE", "nullable": True},
        ]
    }
    put = await run(lambda: ds.put_schema(rid, schema=schema))
    fetched = await run(lambda: ds.get_schema(rid))
    assert fetched.version_id == put.version_id and [f.name for f in fetched.schema_.field_schema_list] == ["id", "v"]
    assert fetched.end_transaction_rid == append.rid


async def test_sdk_errors_for_a_scoped_job(fake: FakeServer, admin: Admin) -> None:
    src = (await admin.create("dataset", "src"))["rid"]
    out = (await admin.create("dataset", "out"))["rid"]
    other = (await admin.create("dataset", "other"))["rid"]
    job = await admin.job({"src": src}, {"out": out})
    ds = client(fake, job["token"]).datasets.Dataset

    with pytest.raises(ds_errors.ReadTableDatasetPermissionDenied) as denied:
        await run(lambda: ds.read_table(other, format="ARROW"))
    assert denied.value.parameters["datasetRid"] == other
    with pytest.raises(ds_errors.CreateTransactionPermissionDenied):
        await run(lambda: ds.Transaction.create(src, transaction_type="APPEND"))
    with pytest.raises(ds_errors.CreateTransactionPermissionDenied):
        await run(lambda: ds.File.upload(src, "x.bin", b"x"))
    txn = await run(lambda: ds.Transaction.create(out, transaction_type="SNAPSHOT"))
    await run(lambda: ds.File.upload(out, "out.parquet", parquet_bytes(table(0, 3)), transaction_rid=txn.rid))
    await run(lambda: ds.Transaction.commit(out, txn.rid))
    assert (await run(lambda: ds.read_table(out, format="ARROW"))).to_pyarrow().equals(table(0, 3))
    with pytest.raises(ds_errors.DatasetNotFound):
        await run(lambda: client(fake, fake.admin_token).datasets.Dataset.get("ri.foundry.main.dataset.missing"))
    with pytest.raises(foundry_sdk.UnauthorizedError):
        await run(lambda: client(fake, "wrong").datasets.Dataset.get(src))


async def test_sdk_media_sets(fake: FakeServer, admin: Admin) -> None:
    plain = (await admin.create("media_set", "plain"))["rid"]
    txd = (await admin.create("media_set", "txd", transactional=True))["rid"]
    ms = client(fake, fake.admin_token).media_sets.MediaSet

    put = await run(lambda: ms.upload(plain, b"%PDF-1.7 doc", media_item_path="docs/a.pdf", preview=True))
    assert put.media_item_rid.startswith("ri.mio.main.media-item.")
    by_path = await run(lambda: ms.get_rid_by_path(plain, media_item_path="docs/a.pdf", preview=True))
    assert by_path.media_item_rid == put.media_item_rid
    info = await run(lambda: ms.info(plain, put.media_item_rid))
    assert info.path == "docs/a.pdf" and info.mime_type == "application/pdf" and info.size_bytes_long == 12
    assert info.view_rid == put.media_set_view_rid and info.logical_timestamp > 0
    assert await run(lambda: ms.read(plain, put.media_item_rid)) == b"%PDF-1.7 doc"
    assert (await run(lambda: ms.get(txd, preview=True))).transaction_policy.type == "batchTransactions"

    txn = await run(lambda: ms.create(txd, preview=True))
    # The SDK's media-set methods declare no typed errors, so these arrive as the generic status classes.
    with pytest.raises(foundry_sdk.ConflictError) as conflict:
        await run(lambda: ms.create(txd, preview=True))
    assert conflict.value.name == "MediaSetOpenTransactionAlreadyExists"
    staged = await run(lambda: ms.upload(txd, b"img", media_item_path="i.png", transaction_id=txn, preview=True))
    assert (await run(lambda: ms.get_rid_by_path(txd, media_item_path="i.png", preview=True))).media_item_rid is None
    assert await run(lambda: ms.commit(txd, txn, preview=True)) is None
    assert (
        await run(lambda: ms.get_rid_by_path(txd, media_item_path="i.png", preview=True))
    ).media_item_rid == staged.media_item_rid
    assert await run(lambda: ms.read(txd, staged.media_item_rid)) == b"img"

    txn2 = await run(lambda: ms.create(txd, preview=True))
    dropped = await run(lambda: ms.upload(txd, b"tmp", media_item_path="t.png", transaction_id=txn2, preview=True))
    assert await run(lambda: ms.abort(txd, txn2, preview=True)) is None
    with pytest.raises(foundry_sdk.NotFoundError) as gone:
        await run(lambda: ms.info(txd, dropped.media_item_rid))
    assert gone.value.name == "MediaItemNotFound"
    assert gone.value.parameters == {"mediaSetRid": txd, "mediaItemRid": dropped.media_item_rid}
    with pytest.raises(foundry_sdk.BadRequestError) as no_path:
        await run(lambda: ms.upload(plain, b"x", preview=True))
    assert no_path.value.name == "MissingMediaItemPath"
    with pytest.raises(foundry_sdk.NotFoundError) as no_set:
        await run(lambda: ms.info("ri.mio.main.media-set.missing", put.media_item_rid))
    assert no_set.value.name == "MediaSetNotFound"
