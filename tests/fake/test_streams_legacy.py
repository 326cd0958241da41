"""Legacy stream-proxy routes share records, auth and provenance with API v2."""

from __future__ import annotations

from fake_stream_proxy import FakeServer
from tests.conftest import Admin
from tests.fake.stream_helpers import assert_envelope, end_offsets, get_records, make_stream, publish


def branch_path(rid: str, suffix: str, branch: str = "master") -> str:
    return f"/stream-proxy/api/streams/{rid}/branches/{branch}/{suffix}"


def view_path(rid: str, view_rid: str, suffix: str) -> str:
    return f"/stream-proxy/api/streams/{rid}/views/{view_rid}/{suffix}"


async def test_json_record_then_records_as_the_compute_module_docs_read_them(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    status, body = await admin.call("POST", branch_path(rid, "jsonRecord"), json={"id": 2, "name": "two"})
    assert status == 200 and body == {"offset": 0, "partitionId": "0"}
    await admin.call("POST", branch_path(rid, "jsonRecord"), json={"id": 4})

    status, records = await admin.call("GET", branch_path(rid, "records"))
    assert status == 200 and isinstance(records, list)
    assert [r["value"]["id"] for r in records] == [2, 4]
    assert records[0] == {"value": {"id": 2, "name": "two"}, "offset": 0, "partitionId": "0"}
    # The same records through API v2: one store.
    _, v2_records = await get_records(admin, rid)
    assert [r["value"] for r in v2_records] == [r["value"] for r in records]


async def test_records_returns_the_latest_per_partition(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    await publish(admin, rid, [{"id": i} for i in range(10)])
    status, records = await admin.call("GET", branch_path(rid, "records"), params={"limit": "3"})
    assert status == 200
    assert [(r["offset"], r["value"]["id"]) for r in records] == [(7, 7), (8, 8), (9, 9)]


async def test_json_record_is_validated(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    status, body = await admin.call("POST", branch_path(rid, "jsonRecord"), json={"id": "x"})
    assert status == 400
    assert_envelope(body, "RecordDoesNotMatchStreamSchema", "INVALID_ARGUMENT")
    status, body = await admin.call("POST", branch_path(rid, "jsonRecord", "nope"), json={"id": 1})
    assert status == 404 and body["errorName"] == "StreamNotFound"


async def test_view_json_records_and_records_v2(admin: Admin) -> None:
    stream = await make_stream(admin, partitions=2)
    rid, view = stream["rid"], stream["viewRid"]
    status, body = await admin.call(
        "POST", view_path(rid, view, "jsonRecords"), json=[{"value": {"id": i}} for i in range(5)]
    )
    assert status == 200, body
    assert body["topic"] == view
    assert body["offsetAndPartitionIds"] == [
        {"offset": 0, "partitionId": "0"},
        {"offset": 0, "partitionId": "1"},
        {"offset": 1, "partitionId": "0"},
        {"offset": 1, "partitionId": "1"},
        {"offset": 2, "partitionId": "0"},
    ]
    status, body = await admin.call("GET", view_path(rid, view, "partition/0/recordsV2"), params={"limit": "2"})
    assert status == 200
    assert body == {"records": [{"offset": 0, "value": {"id": 0}}, {"offset": 1, "value": {"id": 2}}]}
    status, body = await admin.call(
        "GET", view_path(rid, view, "partition/0/recordsV2"), params={"limit": "5", "startOffset": "2"}
    )
    assert body == {"records": [{"offset": 2, "value": {"id": 4}}]}
    status, body = await admin.call("GET", view_path(rid, view, "partition/2/recordsV2"))
    assert status == 400 and body["errorName"] == "Default:InvalidArgument"


async def test_json_records_reject_the_whole_batch(admin: Admin) -> None:
    stream = await make_stream(admin)
    rid, view = stream["rid"], stream["viewRid"]
    batch = [{"value": {"id": 1}}, {"value": {"id": 2, "unknown": 1}}]
    status, body = await admin.call("POST", view_path(rid, view, "jsonRecords"), json=batch)
    assert status == 400 and body["errorName"] == "RecordDoesNotMatchStreamSchema"
    status, body = await admin.call("POST", view_path(rid, view, "jsonRecords"), json=[{"id": 1}])
    assert status == 400 and body["errorName"] == "InvalidRequestBody"
    assert await end_offsets(admin, rid) == {"0": 0}


async def test_unknown_view_is_404(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    status, body = await admin.call("GET", view_path(rid, "ri.foundry-streaming.main.view.x", "partition/0/recordsV2"))
    assert status == 404
    assert_envelope(body, "ViewNotFound", "NOT_FOUND")


async def test_legacy_routes_enforce_job_scopes_and_record_provenance(admin: Admin) -> None:
    source = await make_stream(admin, name="in")
    sink = await make_stream(admin, name="out")
    other = await make_stream(admin, name="other")
    await publish(admin, source["rid"], [{"id": 1}])
    job = await admin.job({"in": source["rid"]}, {"out": sink["rid"]})
    token = job["token"]

    status, records = await admin.call("GET", branch_path(source["rid"], "records"), token)
    assert status == 200 and len(records) == 1
    status, _ = await admin.call("POST", branch_path(sink["rid"], "jsonRecord"), token, json={"id": 2})
    assert status == 200

    status, body = await admin.call("POST", branch_path(source["rid"], "jsonRecord"), token, json={"id": 3})
    assert status == 403
    assert_envelope(body, "PublishRecordToStreamPermissionDenied", "PERMISSION_DENIED")
    status, body = await admin.call("GET", branch_path(other["rid"], "records"), token)
    assert status == 403 and body["errorName"] == "GetRecordsFromStreamPermissionDenied"
    status, body = await admin.call("GET", view_path(other["rid"], other["viewRid"], "partition/0/recordsV2"), token)
    assert status == 403
    status, body = await admin.call(
        "POST", view_path(other["rid"], other["viewRid"], "jsonRecords"), token, json=[{"value": {"id": 1}}]
    )
    assert status == 403 and body["errorName"] == "PublishRecordsToStreamPermissionDenied"
    status, body = await admin.call("GET", branch_path(source["rid"], "records"), "wrong-token")
    assert status == 401

    events = (await admin.provenance(job["jobRid"]))["events"]
    assert [(e["operation"], e["direction"], e["rid"], e["recordCount"]) for e in events] == [
        ("legacy.records", "read", source["rid"], 1),
        ("legacy.jsonRecord", "write", sink["rid"], 1),
    ]


async def test_legacy_writes_survive_a_restart(fake: FakeServer, admin: Admin) -> None:
    stream = await make_stream(admin)
    await admin.call("POST", view_path(stream["rid"], stream["viewRid"], "jsonRecords"), json=[{"value": {"id": 1}}])
    await fake.restart()
    status, body = await admin.call("GET", view_path(stream["rid"], stream["viewRid"], "partition/0/recordsV2"))
    assert status == 200 and body == {"records": [{"offset": 0, "value": {"id": 1}}]}
