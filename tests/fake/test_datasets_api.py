"""The fake's Datasets API v2 over real sockets: transactions, files, views, readTable, schemas, auth."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pyarrow as pa
from yarl import URL

from fake_stream_proxy import FakeServer
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

TXN_RID = re.compile(r"^ri\.foundry\.main\.transaction\.[0-9a-f-]{36}$")


def blob_count(fake: FakeServer) -> int:
    return len(blob_sizes(fake))


def blob_sizes(fake: FakeServer) -> list[int]:
    return [p.stat().st_size for p in (fake.state_dir / "blobs").rglob("*") if p.is_file() and p.suffix != ".tmp"]


async def test_create_dataset_and_branches(admin: Admin) -> None:
    rid = (await admin.create("dataset", "orders"))["rid"]
    assert re.match(r"^ri\.foundry\.main\.dataset\.[0-9a-f-]{36}$", rid)
    status, body = await admin.call("GET", ds(rid))
    assert status == 200 and body["rid"] == rid and body["name"] == "orders" and body["parentFolderRid"]

    status, body = await admin.call("GET", ds(rid, "branches"))
    assert status == 200 and body == {"data": [{"name": "master"}]}
    status, body = await admin.call("POST", ds(rid, "branches"), json={"name": "dev"})
    assert status == 200 and body == {"name": "dev"}
    status, body = await admin.call("POST", ds(rid, "branches"), json={"name": "dev"})
    assert status == 409 and body["errorName"] == "BranchAlreadyExists"
    assert body["parameters"] == {"datasetRid": rid, "branchName": "dev"}
    status, body = await admin.call("GET", ds(rid, "branches", "nope"))
    assert status == 404 and body["errorName"] == "BranchNotFound"
    status, body = await admin.call("POST", ds(rid, "branches"), json={"name": "ri.foundry.main.x.y"})
    assert status == 400 and body["errorName"] == "InvalidBranchName"

    status, body = await admin.call(
        "POST", "/api/v2/datasets", json={"name": "api-made", "parentFolderRid": "ri.compass.main.folder.f1"}
    )
    assert status == 200 and body["name"] == "api-made" and body["parentFolderRid"] == "ri.compass.main.folder.f1"
    status, branches = await admin.call("GET", ds(body["rid"], "branches"))
    assert branches["data"] == [{"name": "master"}]
    status, body = await admin.call("GET", ds("ri.foundry.main.dataset.00000000-0000-0000-0000-000000000000"))
    assert status == 404 and body["errorName"] == "DatasetNotFound"


async def test_transaction_state_machine(admin: Admin) -> None:
    rid = (await admin.create("dataset", "d"))["rid"]
    txn = await open_txn(admin, rid, "APPEND")
    assert TXN_RID.match(txn)
    status, branch = await admin.call("GET", ds(rid, "branches", "master"))
    assert branch == {"name": "master", "transactionRid": txn}  # the open transaction is the head

    status, body = await admin.call("POST", ds(rid, "transactions"), json={"transactionType": "SNAPSHOT"})
    assert status == 409 and body["errorName"] == "OpenTransactionAlreadyExists"
    assert body["parameters"] == {"datasetRid": rid, "branchName": "master"}
    # Another branch is independent.
    await admin.call("POST", ds(rid, "branches"), json={"name": "dev"})
    dev_txn = await open_txn(admin, rid, "UPDATE", branch="dev")

    committed = await close_txn(admin, rid, txn)
    assert committed["status"] == "COMMITTED" and committed["closedTime"] and committed["createdTime"]
    for action in ("commit", "abort"):
        status, body = await admin.call("POST", ds(rid, "transactions", txn, action))
        assert status == 400 and body["errorName"] == "TransactionNotOpen"
        assert body["parameters"]["transactionStatus"] == "COMMITTED"
    status, body = await admin.call("GET", ds(rid, "transactions", txn))
    assert status == 200 and body["status"] == "COMMITTED" and body["transactionType"] == "APPEND"
    aborted = await close_txn(admin, rid, dev_txn, "abort")
    assert aborted["status"] == "ABORTED"

    status, body = await admin.call("GET", ds(rid, "transactions", "ri.foundry.main.transaction.nope"))
    assert status == 404 and body["errorName"] == "TransactionNotFound"
    status, body = await admin.call("POST", ds(rid, "transactions"), json={"transactionType": "MERGE"})
    assert status == 400
    status, body = await admin.call(
        "POST", ds(rid, "transactions"), json={"transactionType": "APPEND"}, params={"branchName": "gone"}
    )
    assert status == 404 and body["errorName"] == "BranchNotFound"

    status, body = await admin.call("GET", ds(rid, "transactions"))
    assert status == 400 and body["errorName"] == "ApiFeaturePreviewUsageOnly"
    status, body = await admin.call("GET", ds(rid, "transactions"), params={"preview": "true", "pageSize": "1"})
    assert status == 200 and [t["rid"] for t in body["data"]] == [dev_txn] and body["nextPageToken"]
    status, body = await admin.call(
        "GET", ds(rid, "transactions"), params={"preview": "true", "pageToken": body["nextPageToken"]}
    )
    assert [t["rid"] for t in body["data"]] == [txn] and "nextPageToken" not in body


async def test_aborted_transaction_leaves_no_trace(admin: Admin, fake: FakeServer) -> None:
    rid = (await admin.create("dataset", "d"))["rid"]
    await write_table(admin, rid, "SNAPSHOT", {"keep.parquet": table(0, 4)})
    blobs = blob_count(fake)
    txn = await open_txn(admin, rid, "SNAPSHOT")
    await upload(admin, rid, "junk.parquet", parquet_bytes(table(50, 4)), transactionRid=txn)
    await upload(admin, rid, "keep.parquet", parquet_bytes(table(60, 4)), transactionRid=txn)
    assert blob_count(fake) == blobs + 2
    # An open transaction's own view can be inspected with endTransactionRid, but is not current.
    assert sorted(await list_files(admin, rid, endTransactionRid=txn)) == ["junk.parquet", "keep.parquet"]
    assert await list_files(admin, rid) == ["keep.parquet"]

    aborted = await close_txn(admin, rid, txn, "abort")
    assert aborted["status"] == "ABORTED"
    assert await list_files(admin, rid) == ["keep.parquet"]
    assert (await read_table(admin, rid)).equals(table(0, 4))
    assert blob_count(fake) == blobs
    status, body = await admin.call("GET", ds(rid, "files"), params={"endTransactionRid": txn})
    assert status == 400 and body["errorName"] == "TransactionNotCommitted"
    status, body = await admin.call(
        "POST", ds(rid, "files", "late.parquet", "upload"), data=b"x", params={"transactionRid": txn}
    )
    assert status == 400 and body["errorName"] == "TransactionNotOpen"
    status, branch = await admin.call("GET", ds(rid, "branches", "master"))
    assert branch["transactionRid"] != txn
    # The branch is free for a new transaction again.
    await close_txn(admin, rid, await open_txn(admin, rid, "UPDATE"))


async def test_upload_without_transaction_opens_and_commits_one(admin: Admin) -> None:
    rid = (await admin.create("dataset", "d"))["rid"]
    first = await upload(admin, rid, "a.bin", b"one")
    assert first["path"] == "a.bin" and first["sizeBytes"] == 3 and TXN_RID.match(first["transactionRid"])
    assert first["updatedTime"].endswith("Z")
    status, txn = await admin.call("GET", ds(rid, "transactions", first["transactionRid"]))
    assert txn["status"] == "COMMITTED" and txn["transactionType"] == "UPDATE"

    second = await upload(admin, rid, "a.bin", b"two!")  # UPDATE overwrites the path
    status, content = await admin.call("GET", ds(rid, "files", "a.bin", "content"))
    assert content == b"two!"
    snap = await upload(admin, rid, "b.bin", b"b", transactionType="SNAPSHOT")
    status, txn = await admin.call("GET", ds(rid, "transactions", snap["transactionRid"]))
    assert txn["transactionType"] == "SNAPSHOT"
    assert await list_files(admin, rid) == ["b.bin"]
    assert second["transactionRid"] != first["transactionRid"]

    # With a transaction already open, the implicit one cannot be opened.
    open_rid = await open_txn(admin, rid, "APPEND")
    status, body = await admin.call("POST", ds(rid, "files", "c.bin", "upload"), data=b"c")
    assert status == 409 and body["errorName"] == "OpenTransactionAlreadyExists"
    await close_txn(admin, rid, open_rid)


async def test_file_listing_pages_and_filters(admin: Admin) -> None:
    rid = (await admin.create("dataset", "d"))["rid"]
    txn = await open_txn(admin, rid, "SNAPSHOT")
    paths = [f"dir{i % 2}/f{i:02d}.bin" for i in range(25)]
    for p in paths:
        await upload(admin, rid, p, p.encode(), transactionRid=txn)
    await close_txn(admin, rid, txn)

    seen: list[str] = []
    token: str | None = None
    for _ in range(10):
        params = {"pageSize": "10", **({"pageToken": token} if token else {})}
        status, body = await admin.call("GET", ds(rid, "files"), params=params)
        assert status == 200 and len(body["data"]) <= 10
        seen += [f["path"] for f in body["data"]]
        token = body.get("nextPageToken")
        if token is None:
            break
    assert seen == sorted(paths)
    assert await list_files(admin, rid, pathPrefix="dir1/") == sorted(p for p in paths if p.startswith("dir1/"))
    assert await list_files(admin, rid, pathPrefix="dir0/f04.bin") == ["dir0/f04.bin"]
    status, body = await admin.call("GET", ds(rid, "files"), params={"pageSize": "0"})
    assert status == 400 and body["errorName"] == "InvalidPageSize"


async def test_file_metadata_and_content_with_encoded_paths(admin: Admin) -> None:
    rid = (await admin.create("dataset", "d"))["rid"]
    meta = await upload(admin, rid, "a/b c%.bin", b"\x00\x01payload")
    status, body = await admin.call("GET", ds(rid, "files", "a/b c%.bin"))
    assert status == 200 and body == meta and body["path"] == "a/b c%.bin"
    status, content = await admin.call("GET", ds(rid, "files", "a/b c%.bin", "content"))
    assert status == 200 and content == b"\x00\x01payload"
    status, body = await admin.call("GET", ds(rid, "files", "nope.bin", "content"))
    assert status == 404 and body["errorName"] == "FileNotFoundOnBranch"
    assert body["parameters"] == {"datasetRid": rid, "branchName": "master", "path": "nope.bin"}
    status, body = await admin.call(
        "GET", ds(rid, "files", "nope.bin"), params={"endTransactionRid": meta["transactionRid"]}
    )
    assert status == 404 and body["errorName"] == "FileNotFoundOnTransactionRange"


async def test_path_traversal_and_bad_paths_rejected(admin: Admin, fake: FakeServer) -> None:
    rid = (await admin.create("dataset", "d"))["rid"]
    for bad in ("../escape.bin", "/etc/passwd", "a/../../b", "a//b", "./x", "..", "a\\b"):
        url = ds(rid, "files", bad, "upload").replace("/../", "/%2E%2E/")  # a bare ".." segment, still encoded
        async with admin.session.post(
            URL(admin.fake.url + url, encoded=True), data=b"evil", headers=admin.headers
        ) as r:
            assert r.status == 400 and (await r.json())["errorName"] == "InvalidFilePath", bad
    assert await list_files(admin, rid) == []
    assert not list(fake.state_dir.parent.glob("escape.bin"))
    assert blob_count(fake) == 0
    _, body = await admin.call("GET", ds(rid, "transactions"), params={"preview": "true"})
    assert body["data"] == []  # nothing was even opened


async def test_delete_transactions_remove_files(admin: Admin) -> None:
    rid = (await admin.create("dataset", "d"))["rid"]
    await write_table(
        admin, rid, "SNAPSHOT", {"a.parquet": table(0, 2), "b.parquet": table(2, 2), "c.parquet": table(4, 2)}
    )
    status, _ = await admin.call("DELETE", ds(rid, "files", "a.parquet"))
    assert status == 204
    assert await list_files(admin, rid) == ["b.parquet", "c.parquet"]

    txn = await open_txn(admin, rid, "DELETE")
    status, body = await admin.call(
        "POST", ds(rid, "files", "x.bin", "upload"), data=b"x", params={"transactionRid": txn}
    )
    assert status == 400 and body["errorName"] == "InvalidTransactionType"
    status, _ = await admin.call("DELETE", ds(rid, "files", "b.parquet"), params={"transactionRid": txn})
    assert status == 204
    assert await list_files(admin, rid) == ["b.parquet", "c.parquet"]  # not before the commit
    await close_txn(admin, rid, txn)
    assert await list_files(admin, rid) == ["c.parquet"]
    assert (await read_table(admin, rid)).equals(table(4, 2))
    status, body = await admin.call("DELETE", ds(rid, "files", "a.parquet"))
    assert status == 404 and body["errorName"] == "FileNotFoundOnBranch"


async def test_branch_from_transaction_has_its_own_history(admin: Admin) -> None:
    rid = (await admin.create("dataset", "d"))["rid"]
    t1 = await write_table(admin, rid, "SNAPSHOT", {"one.parquet": table(0, 1)})
    await write_table(admin, rid, "APPEND", {"two.parquet": table(1, 1)})
    status, body = await admin.call("POST", ds(rid, "branches"), json={"name": "fix", "transactionRid": t1})
    assert status == 200 and body == {"name": "fix", "transactionRid": t1}
    assert await list_files(admin, rid, branchName="fix") == ["one.parquet"]
    txn = await open_txn(admin, rid, "APPEND", branch="fix")
    await upload(admin, rid, "three.parquet", parquet_bytes(table(2, 1)), transactionRid=txn)
    await close_txn(admin, rid, txn)
    assert await list_files(admin, rid, branchName="fix") == ["one.parquet", "three.parquet"]
    assert await list_files(admin, rid) == ["one.parquet", "two.parquet"]
    assert (await read_table(admin, rid, branchName="fix")).column("id").to_pylist() == [0, 2]


async def test_schema_put_and_get(admin: Admin) -> None:
    rid = (await admin.create("dataset", "d"))["rid"]
    schema = {
        "fieldSchemaList": [
            {"name": "id", "type": "LONG", "nullable": False},
            {"name": "s", "type": "STRING", "nullable": True},
        ]
    }
    status, body = await admin.call("GET", ds(rid, "getSchema"))
    assert status == 404 and body["errorName"] == "SchemaNotFound"
    status, body = await admin.call("PUT", ds(rid, "putSchema"), json={"schema": schema})
    assert status == 404 and body["errorName"] == "DatasetViewNotFound"  # no transaction yet

    txn = await write_table(admin, rid, "SNAPSHOT", {})
    status, put = await admin.call("PUT", ds(rid, "putSchema"), json={"schema": schema})
    assert (
        status == 200 and put["schema"] == schema and put["endTransactionRid"] == txn and put["branchName"] == "master"
    )
    status, got = await admin.call("GET", ds(rid, "getSchema"))
    assert status == 200 and got == put
    status, body = await admin.call(
        "PUT", ds(rid, "putSchema"), json={"schema": {"fieldSchemaList": [{"name": "x", "type": "NOPE"}]}}
    )
    assert status == 400 and body["errorName"] == "InvalidSchema"
    # An empty view with a schema reads as a typed, empty table.
    empty = await read_table(admin, rid)
    assert empty.num_rows == 0 and empty.schema.names == ["id", "s"] and empty.schema.field("id").type == pa.int64()


async def test_job_tokens_are_scoped(admin: Admin) -> None:
    src = (await admin.create("dataset", "src"))["rid"]
    out = (await admin.create("dataset", "out"))["rid"]
    other = (await admin.create("dataset", "other"))["rid"]
    await write_table(admin, src, "SNAPSHOT", {"in.parquet": table(0, 3)})
    await write_table(admin, other, "SNAPSHOT", {"secret.parquet": table(0, 3)})
    job = await admin.job({"src": src}, {"out": out})
    token = job["token"]

    assert (await read_table(admin, src, token)).equals(table(0, 3))
    status, body = await admin.call("GET", ds(other, "readTable"), token, params={"format": "ARROW"})
    assert status == 403 and body["errorName"] == "ReadTableDatasetPermissionDenied"
    assert body["parameters"] == {"datasetRid": other}
    status, body = await admin.call("GET", ds(other, "files", "secret.parquet", "content"), token)
    assert status == 403 and body["errorName"] == "GetFileContentPermissionDenied"
    status, body = await admin.call("GET", ds(other, "files"), token)
    assert status == 404 and body["errorName"] == "DatasetNotFound"  # no permission error declared: hidden
    # Inputs are read-only.
    status, body = await admin.call("POST", ds(src, "transactions"), token, json={"transactionType": "APPEND"})
    assert status == 403 and body["errorName"] == "CreateTransactionPermissionDenied"
    status, body = await admin.call("POST", ds(src, "files", "x.bin", "upload"), token, data=b"x")
    assert status == 403 and body["errorName"] == "CreateTransactionPermissionDenied"
    admin_txn = await open_txn(admin, src, "APPEND")
    status, body = await admin.call(
        "POST", ds(src, "files", "x.bin", "upload"), token, data=b"x", params={"transactionRid": admin_txn}
    )
    assert status == 403 and body["errorName"] == "UploadFilePermissionDenied"
    assert body["parameters"] == {"datasetRid": src, "transactionRid": admin_txn, "path": "x.bin"}
    status, body = await admin.call("POST", ds(src, "transactions", admin_txn, "commit"), token)
    assert status == 403 and body["errorName"] == "CommitTransactionPermissionDenied"
    status, body = await admin.call(
        "POST", "/api/v2/datasets", token, json={"name": "n", "parentFolderRid": "ri.compass.main.folder.f"}
    )
    assert status == 403 and body["errorName"] == "CreateDatasetPermissionDenied"
    status, body = await admin.call("GET", ds(src, "files"), "not-a-token")
    assert status == 401

    # Outputs are writable, on their declared branch only.
    txn = await open_txn_as(admin, out, token)
    meta = await upload(admin, out, "part.parquet", parquet_bytes(table(7, 2)), token, transactionRid=txn)
    status, body = await admin.call("POST", ds(out, "transactions", txn, "commit"), token)
    assert status == 200 and body["status"] == "COMMITTED"
    await admin.call("POST", ds(out, "branches"), json={"name": "other"})
    status, body = await admin.call(
        "POST", ds(out, "transactions"), token, json={"transactionType": "APPEND"}, params={"branchName": "other"}
    )
    assert status == 403

    events = (await admin.provenance(job["jobRid"]))["events"]
    ops = [(e["operation"], e["rid"]) for e in events]
    assert ("readTable", src) in ops and ("uploadFile", out) in ops and ("commitTransaction", out) in ops
    read = next(e for e in events if e["operation"] == "readTable")
    assert read["direction"] == "read" and read["recordCount"] == 3 and read["complete"] is True
    up = next(e for e in events if e["operation"] == "uploadFile")
    assert up["transactionRid"] == txn and up["path"] == "part.parquet" and up["sizeBytes"] == meta["sizeBytes"]
    commit = next(e for e in events if e["operation"] == "commitTransaction")
    assert commit["direction"] == "write" and commit["paths"] == ["part.parquet"] and commit["recordCount"] == 1


async def open_txn_as(admin: Admin, rid: str, token: str) -> str:
    status, body = await admin.call("POST", ds(rid, "transactions"), token, json={"transactionType": "SNAPSHOT"})
    assert status == 200, body
    return str(body["rid"])


async def test_restart_keeps_everything(admin: Admin, fake: FakeServer) -> None:
    rid = (await admin.create("dataset", "d"))["rid"]
    t1 = await write_table(admin, rid, "SNAPSHOT", {"a.parquet": table(0, 5)})
    await admin.call(
        "PUT",
        ds(rid, "putSchema"),
        json={"schema": {"fieldSchemaList": [{"name": "id", "type": "LONG", "nullable": True}]}},
    )
    open_rid = await open_txn(admin, rid, "APPEND")
    await upload(admin, rid, "b.parquet", parquet_bytes(table(5, 5)), transactionRid=open_rid)

    await fake.restart()

    # The put schema survived the restart: readTable's columns follow it (only `id`).
    assert (await read_table(admin, rid)).equals(table(0, 5).select(["id"]))
    status, body = await admin.call("GET", ds(rid, "transactions", open_rid))
    assert body["status"] == "OPEN"
    status, body = await admin.call("POST", ds(rid, "transactions"), json={"transactionType": "APPEND"})
    assert status == 409  # still the one open transaction
    await close_txn(admin, rid, open_rid)
    assert (await read_table(admin, rid)).sort_by("id").equals(table(0, 10).select(["id"]))
    assert (await read_table(admin, rid, endTransactionRid=t1)).equals(table(0, 5).select(["id"]))
    status, body = await admin.call("GET", ds(rid, "getSchema"))
    assert status == 200 and body["endTransactionRid"] == t1


async def test_large_upload_is_streamed_to_disk(admin: Admin, fake: FakeServer) -> None:
    """Bigger than the fake's JSON body limit: uploads must not go through request.read()."""
    rid = (await admin.create("dataset", "d"))["rid"]
    size = 70 * 1024 * 1024

    async def body() -> AsyncIterator[bytes]:
        chunk = b"\xab" * (1024 * 1024)
        for _ in range(size // len(chunk)):
            yield chunk

    status, meta = await admin.call("POST", ds(rid, "files", "big.bin", "upload"), data=body())
    assert status == 200 and meta["sizeBytes"] == size
    assert blob_sizes(fake) == [size]
