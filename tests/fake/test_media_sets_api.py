"""The fake's Media sets API v2 over real sockets: uploads, transactions, lookups, content, auth."""

from __future__ import annotations

import re
from typing import Any

from fake_stream_proxy import FakeServer
from tests.conftest import Admin

API = "/api/v2/mediasets"
PREVIEW = {"preview": "true"}
ITEM_RID = re.compile(r"^ri\.mio\.main\.media-item\.[0-9a-f-]{36}$")
VIEW_RID = re.compile(r"^ri\.mio\.main\.view\.[0-9a-f-]{36}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def put(
    admin: Admin,
    rid: str,
    path: str | None,
    data: bytes,
    token: str | None = None,
    content_type: str = "*/*",
    **params: str,
) -> tuple[int, Any]:
    query = {**PREVIEW, **params, **({"mediaItemPath": path} if path is not None else {})}
    return await admin.call(
        "POST", f"{API}/{rid}/items", token, data=data, params=query, headers={"Content-Type": content_type}
    )


async def rid_by_path(admin: Admin, rid: str, path: str, token: str | None = None) -> str | None:
    status, body = await admin.call(
        "GET", f"{API}/{rid}/items/getRidByPath", token, params={**PREVIEW, "mediaItemPath": path}
    )
    assert status == 200, body
    found = body.get("mediaItemRid")
    assert found is None or isinstance(found, str)
    return found


async def open_txn(admin: Admin, rid: str, token: str | None = None) -> str:
    status, body = await admin.call("POST", f"{API}/{rid}/transactions", token, params=PREVIEW)
    assert status == 200, body
    assert isinstance(body, str) and UUID.match(body)  # a bare JSON string
    return body


async def test_upload_lookup_info_and_content(admin: Admin) -> None:
    created = await admin.create("media_set", "photos")
    rid = created["rid"]
    assert re.match(r"^ri\.mio\.main\.media-set\.[0-9a-f-]{36}$", rid)

    status, first = await put(admin, rid, "cams/a.png", b"\x89PNG-one")
    assert status == 200 and ITEM_RID.match(first["mediaItemRid"]) and VIEW_RID.match(first["mediaSetViewRid"])
    assert await rid_by_path(admin, rid, "cams/a.png") == first["mediaItemRid"]
    assert await rid_by_path(admin, rid, "cams/none.png") is None

    status, info = await admin.call("GET", f"{API}/{rid}/items/{first['mediaItemRid']}")
    assert status == 200
    assert info["viewRid"] == first["mediaSetViewRid"] and info["path"] == "cams/a.png"
    assert info["mimeType"] == "image/png" and info["sizeBytes"] == 8 and info["sizeBytesLong"] == 8
    assert isinstance(info["logicalTimestamp"], int) and info["logicalTimestamp"] > 1_600_000_000_000_000

    async with admin.session.get(
        f"{admin.fake.url}{API}/{rid}/items/{first['mediaItemRid']}/content", headers=admin.headers
    ) as resp:
        assert resp.status == 200 and resp.content_type == "image/png" and await resp.read() == b"\x89PNG-one"

    # The last write to a path wins; the earlier item stays readable by rid.
    status, second = await put(admin, rid, "cams/a.png", b"two", content_type="text/plain")
    assert await rid_by_path(admin, rid, "cams/a.png") == second["mediaItemRid"] != first["mediaItemRid"]
    status, info2 = await admin.call("GET", f"{API}/{rid}/items/{second['mediaItemRid']}")
    assert info2["mimeType"] == "text/plain" and info2["logicalTimestamp"] > info["logicalTimestamp"]
    status, old = await admin.call("GET", f"{API}/{rid}/items/{first['mediaItemRid']}/content")
    assert status == 200 and old == b"\x89PNG-one"

    status, ms = await admin.call("GET", f"{API}/{rid}", params=PREVIEW)
    assert ms == {
        "rid": rid, "mediaSchema": "MULTIMODAL", "defaultBranchName": "master",
        "transactionPolicy": {"type": "noTransactions"}, "pathsRequired": True,
    }  # fmt: skip


async def test_upload_validation(admin: Admin) -> None:
    rid = (await admin.create("media_set", "m"))["rid"]
    status, body = await put(admin, rid, None, b"x")
    assert status == 400 and body["errorName"] == "MissingMediaItemPath" and body["parameters"] == {"mediaSetRid": rid}
    status, body = await put(admin, rid, "p" * 256, b"x")
    assert status == 400
    status, body = await put(admin, rid, "p" * 255, b"x")
    assert status == 200
    status, body = await put(admin, rid, "empty.bin", b"")
    assert status == 400 and body["errorName"] == "MissingMediaItemContent"
    status, body = await admin.call("POST", f"{API}/{rid}/items", data=b"x", params={"mediaItemPath": "a"})
    assert status == 400 and body["errorName"] == "ApiFeaturePreviewUsageOnly"
    status, body = await put(admin, rid, "a", b"x", branchName="master", viewRid="ri.mio.main.view.x")
    assert status == 400 and body["errorName"] == "ConflictingMediaSetIdentifiers"

    custom = "ri.mio.main.media-item.0b5e5a8e-1f0c-4c6a-9d51-3f1b2a0c9e77"
    status, body = await put(admin, rid, "c", b"x", mediaItemRid=custom)
    assert status == 200 and body["mediaItemRid"] == custom
    status, body = await put(admin, rid, "c", b"x", mediaItemRid=custom)
    assert status == 409 and body["errorName"] == "MediaItemRidAlreadyExists"
    status, body = await put(admin, rid, "c", b"x", mediaItemRid="ri.mio.main.dataset.x")
    assert status == 400 and body["errorName"] == "InvalidMediaItemRid"

    status, body = await admin.call("GET", f"{API}/ri.mio.main.media-set.nope/items/{custom}")
    assert status == 404 and body["errorName"] == "MediaSetNotFound"
    missing = "ri.mio.main.media-item.00000000-0000-0000-0000-000000000000"
    status, body = await admin.call("GET", f"{API}/{rid}/items/{missing}/content")
    assert status == 404 and body["errorName"] == "MediaItemNotFound"
    assert body["parameters"] == {"mediaSetRid": rid, "mediaItemRid": missing}


async def test_transactions_gate_visibility(admin: Admin, fake: FakeServer) -> None:
    rid = (await admin.create("media_set", "tx", transactional=True))["rid"]
    status, body = await put(admin, rid, "a.txt", b"no txn")
    assert status == 400 and "transactionId" in body["parameters"]["message"]

    txn = await open_txn(admin, rid)
    status, body = await admin.call("POST", f"{API}/{rid}/transactions", params=PREVIEW)
    assert status == 409 and body["errorName"] == "MediaSetOpenTransactionAlreadyExists"
    status, one = await put(admin, rid, "a.txt", b"first", transactionId=txn)
    status, two = await put(admin, rid, "a.txt", b"second", transactionId=txn)
    assert status == 200
    assert await rid_by_path(admin, rid, "a.txt") is None  # not before the commit
    status, body = await admin.call("GET", f"{API}/{rid}/items/{two['mediaItemRid']}")
    assert status == 404 and body["errorName"] == "MediaItemNotFound"

    status, body = await admin.call("POST", f"{API}/{rid}/transactions/{txn}/commit", params=PREVIEW)
    assert status == 204 and body is None
    assert await rid_by_path(admin, rid, "a.txt") == two["mediaItemRid"]
    status, content = await admin.call("GET", f"{API}/{rid}/items/{one['mediaItemRid']}/content")
    assert content == b"first"
    status, body = await admin.call("POST", f"{API}/{rid}/transactions/{txn}/commit", params=PREVIEW)
    assert status == 400 and body["errorName"] == "TransactionNotOpen"
    status, body = await put(admin, rid, "b.txt", b"late", transactionId=txn)
    assert status == 400 and body["errorName"] == "TransactionNotOpen"

    blobs = sum(1 for p in (fake.state_dir / "blobs").rglob("*") if p.is_file())
    txn2 = await open_txn(admin, rid)
    status, gone = await put(admin, rid, "b.txt", b"aborted", transactionId=txn2)
    status, body = await admin.call("POST", f"{API}/{rid}/transactions/{txn2}/abort", params=PREVIEW)
    assert status == 204
    assert await rid_by_path(admin, rid, "b.txt") is None
    status, body = await admin.call("GET", f"{API}/{rid}/items/{gone['mediaItemRid']}/content")
    assert status == 404
    assert sum(1 for p in (fake.state_dir / "blobs").rglob("*") if p.is_file()) == blobs
    status, body = await admin.call("POST", f"{API}/{rid}/transactions/{uuid_of(9)}/commit", params=PREVIEW)
    assert status == 404


def uuid_of(n: int) -> str:
    return f"{n:08d}-0000-0000-0000-000000000000"


async def test_job_tokens_are_scoped(admin: Admin) -> None:
    src = (await admin.create("media_set", "in"))["rid"]
    out = (await admin.create("media_set", "out"))["rid"]
    other = (await admin.create("media_set", "other"))["rid"]
    status, item = await put(admin, src, "in.pdf", b"%PDF-1.4")
    status, secret = await put(admin, other, "secret.pdf", b"%PDF-secret")
    job = await admin.job({"in": src}, {"out": out})
    token = job["token"]

    assert await rid_by_path(admin, src, "in.pdf", token) == item["mediaItemRid"]
    status, content = await admin.call("GET", f"{API}/{src}/items/{item['mediaItemRid']}/content", token)
    assert status == 200 and content == b"%PDF-1.4"
    status, body = await put(admin, src, "x.pdf", b"x", token)
    assert status == 403 and body["errorName"] == "Default:PermissionDenied"
    status, body = await admin.call("POST", f"{API}/{src}/transactions", token, params=PREVIEW)
    assert status == 403
    status, body = await admin.call("GET", f"{API}/{other}/items/{secret['mediaItemRid']}/content", token)
    assert status == 403
    status, body = await admin.call(
        "GET", f"{API}/{other}/items/getRidByPath", token, params={**PREVIEW, "mediaItemPath": "secret.pdf"}
    )
    assert status == 403 and body["errorName"] == "GetMediaItemRidByPathPermissionDenied"
    status, body = await admin.call("GET", f"{API}/{src}/items/{item['mediaItemRid']}", "bogus")
    assert status == 401

    status, written = await put(admin, out, "result.json", b'{"ok": true}', token)
    assert status == 200
    status, info = await admin.call("GET", f"{API}/{out}/items/{written['mediaItemRid']}", token)
    assert info["mimeType"] == "application/json"

    events = (await admin.provenance(job["jobRid"]))["events"]
    read = next(e for e in events if e["operation"] == "readMediaItem")
    assert read["rid"] == src and read["direction"] == "read" and read["mediaItemRid"] == item["mediaItemRid"]
    assert read["sizeBytes"] == 8 and read["path"] == "in.pdf"
    wrote = next(e for e in events if e["operation"] == "uploadMediaItem")
    assert wrote["rid"] == out and wrote["direction"] == "write" and wrote["path"] == "result.json"
    assert wrote["mediaItemRid"] == written["mediaItemRid"] and wrote["sizeBytes"] == 12


async def test_restart_keeps_items_and_open_transactions(admin: Admin, fake: FakeServer) -> None:
    plain = (await admin.create("media_set", "plain"))["rid"]
    txd = (await admin.create("media_set", "txd", transactional=True))["rid"]
    status, item = await put(admin, plain, "a.bin", b"kept")
    txn = await open_txn(admin, txd)
    status, pending = await put(admin, txd, "p.bin", b"pending", transactionId=txn)

    await fake.restart()

    status, content = await admin.call("GET", f"{API}/{plain}/items/{item['mediaItemRid']}/content")
    assert status == 200 and content == b"kept"
    assert await rid_by_path(admin, txd, "p.bin") is None
    status, _ = await admin.call("POST", f"{API}/{txd}/transactions/{txn}/commit", params=PREVIEW)
    assert status == 204
    assert await rid_by_path(admin, txd, "p.bin") == pending["mediaItemRid"]
    status, ms = await admin.call("GET", f"{API}/{txd}", params=PREVIEW)
    assert ms["transactionPolicy"] == {"type": "batchTransactions"}
