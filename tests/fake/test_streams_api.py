"""Streams API v2 of the fake, over real sockets: shapes, schema checks, partitions, auth, durability."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fake_stream_proxy import FakeServer
from fake_stream_proxy.streams.schema import RecordError, SchemaError, check_schema, validate_record
from tests.conftest import Admin
from tests.fake.stream_helpers import (
    PREVIEW,
    SCHEMA,
    assert_envelope,
    end_offsets,
    field,
    get_records,
    hs,
    make_stream,
    publish,
    v2,
)

CREATE = "/api/v2/streams/datasets/create"


async def test_create_streaming_dataset_then_streams_on_branches(admin: Admin) -> None:
    body = {"name": "events", "parentFolderRid": "ri.compass.main.folder.1", "schema": SCHEMA}
    status, created = await admin.call("POST", CREATE, params=PREVIEW, json=body)
    assert status == 200, created
    assert created["name"] == "events" and created["parentFolderRid"] == "ri.compass.main.folder.1"
    rid = created["rid"]
    assert rid.startswith("ri.foundry.main.dataset.")

    status, stream = await admin.call("GET", v2(rid))
    assert status == 200, stream
    assert stream["branchName"] == "master" and stream["schema"] == SCHEMA
    assert stream["viewRid"].startswith("ri.foundry-streaming.main.view.")
    assert (stream["partitionsCount"], stream["streamType"], stream["compressed"]) == (1, "LOW_LATENCY", False)

    # A branch name with a slash arrives percent-encoded in the path, as the SDK sends it.
    new = {"branchName": "feature/x", "schema": SCHEMA, "partitionsCount": 3, "streamType": "HIGH_THROUGHPUT"}
    status, branch_stream = await admin.call(
        "POST", f"/api/v2/streams/datasets/{rid}/streams", params=PREVIEW, json=new
    )
    assert status == 200, branch_stream
    assert branch_stream["branchName"] == "feature/x" and branch_stream["partitionsCount"] == 3
    assert branch_stream["viewRid"] != stream["viewRid"]
    status, got = await admin.call("GET", v2(rid, "feature/x"))
    assert status == 200 and got == branch_stream

    status, again = await admin.call("POST", f"/api/v2/streams/datasets/{rid}/streams", params=PREVIEW, json=new)
    assert status == 409
    assert_envelope(again, "BranchAlreadyExists", "CONFLICT")
    status, dup = await admin.call("POST", CREATE, params=PREVIEW, json=body)
    assert status == 409
    assert_envelope(dup, "ResourceNameAlreadyExists", "CONFLICT")


async def test_preview_endpoints_need_preview_true(admin: Admin) -> None:
    stream = await make_stream(admin)
    status, body = await admin.call("GET", hs(stream["rid"], suffix="/getEndOffsets"))
    assert status == 400
    assert_envelope(body, "ApiFeaturePreviewUsageOnly", "INVALID_ARGUMENT")
    status, body = await admin.call("POST", CREATE, json={"name": "x", "parentFolderRid": "f", "schema": SCHEMA})
    assert status == 400 and body["errorName"] == "ApiFeaturePreviewUsageOnly"


async def test_invalid_schemas_are_rejected(admin: Admin) -> None:
    bad_type = {"fields": [field("x", "uuid")]}
    status, body = await admin.call(
        "POST", CREATE, params=PREVIEW, json={"name": "a", "parentFolderRid": "f", "schema": bad_type}
    )
    assert status == 400 and body["errorName"] == "InvalidFieldSchema" and body["parameters"]["fieldName"] == "x"
    bad_key = {"fields": [field("x", "double")], "keyFieldNames": ["x"]}
    status, body = await admin.call(
        "POST", CREATE, params=PREVIEW, json={"name": "b", "parentFolderRid": "f", "schema": bad_key}
    )
    assert status == 400 and body["errorName"] == "InvalidFieldSchema"


async def test_get_unknown_stream_is_404_envelope(admin: Admin) -> None:
    stream = await make_stream(admin)
    status, body = await admin.call("GET", v2(stream["rid"], "nope"))
    assert status == 404
    assert_envelope(body, "StreamNotFound", "NOT_FOUND")
    assert body["parameters"] == {"datasetRid": stream["rid"], "streamBranchName": "nope"}
    status, body = await admin.call(
        "GET", hs("ri.foundry.main.dataset.missing", suffix="/getEndOffsets"), params=PREVIEW
    )
    assert status == 404 and body["errorName"] == "StreamNotFound"


async def test_publish_then_read_back_in_order_with_paging(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    status, _ = await admin.call("POST", hs(rid, suffix="/publishRecord"), json={"record": {"id": 0, "name": "a"}})
    assert status == 204
    status, body = await publish(admin, rid, [{"id": i} for i in range(1, 5)] + [{"id": "9007199254740993"}])
    assert status == 204 and body is None
    assert await end_offsets(admin, rid) == {"0": 6}

    status, records = await get_records(admin, rid)
    assert status == 200
    assert [r["offset"] for r in records] == list(range(6))
    assert records[0]["value"] == {"id": 0, "name": "a"}
    # A long sent as a JSON string is stored as the number it denotes.
    assert records[5]["value"] == {"id": 9007199254740993}
    status, page = await get_records(admin, rid, start=2, limit=2)
    assert [r["offset"] for r in page] == [2, 3]
    status, tail = await get_records(admin, rid, start=6)
    assert status == 200 and tail == []
    status, body = await get_records(admin, rid, partition=1)
    assert status == 400
    assert_envelope(body, "Default:InvalidArgument", "INVALID_ARGUMENT")


async def test_one_bad_record_rejects_the_whole_batch(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    status, body = await publish(admin, rid, [{"id": 1}, {"id": "one"}, {"id": 3}])
    assert status == 400
    assert_envelope(body, "RecordDoesNotMatchStreamSchema", "INVALID_ARGUMENT")
    assert body["parameters"]["datasetRid"] == rid and "records[1]" in body["parameters"]["message"]
    for bad in ({"id": 1, "extra": True}, {"name": "no id"}, {"id": None}, ["not", "an", "object"]):
        status, body = await publish(admin, rid, [{"id": 1}, bad])
        assert status == 400 and body["errorName"] == "RecordDoesNotMatchStreamSchema", bad
    assert await end_offsets(admin, rid) == {"0": 0}


async def test_admin_stream_without_schema_accepts_any_object(admin: Admin) -> None:
    rid = (await make_stream(admin, schema=None))["rid"]
    assert (await publish(admin, rid, [{"anything": [1, {"x": None}]}, {}]))[0] == 204
    status, body = await publish(admin, rid, ["not an object"])
    assert status == 400 and body["errorName"] == "RecordDoesNotMatchStreamSchema"
    _, records = await get_records(admin, rid)
    assert [r["value"] for r in records] == [{"anything": [1, {"x": None}]}, {}]


async def test_oversized_record_is_413(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    status, body = await publish(admin, rid, [{"id": 1, "name": "x" * (1024 * 1024 + 1)}])
    assert status == 413
    assert_envelope(body, "RecordTooLarge", "REQUEST_ENTITY_TOO_LARGE")


async def test_keyless_records_spread_round_robin_over_partitions(admin: Admin) -> None:
    rid = (await make_stream(admin, partitions=3))["rid"]
    assert (await publish(admin, rid, [{"id": i} for i in range(7)]))[0] == 204
    assert await end_offsets(admin, rid) == {"0": 3, "1": 2, "2": 2}
    seen = []
    for partition in range(3):
        _, records = await get_records(admin, rid, partition)
        assert [r["offset"] for r in records] == list(range(len(records)))
        seen += [r["value"]["id"] for r in records]
    assert sorted(seen) == list(range(7))


async def test_keyed_records_always_land_in_the_same_partition(admin: Admin) -> None:
    schema = {"fields": [field("user", "string", nullable=False), field("n", "integer")], "keyFieldNames": ["user"]}
    rid = (await make_stream(admin, schema=schema, partitions=4))["rid"]
    users = [f"user-{i}" for i in range(12)]
    for n in range(3):
        assert (await publish(admin, rid, [{"user": u, "n": n} for u in users]))[0] == 204
    partitions_of: dict[str, set[int]] = {}
    for partition in range(4):
        _, records = await get_records(admin, rid, partition)
        for record in records:
            partitions_of.setdefault(record["value"]["user"], set()).add(partition)
        # Per key, order is preserved within its partition.
        for user in {r["value"]["user"] for r in records}:
            assert [r["value"]["n"] for r in records if r["value"]["user"] == user] == [0, 1, 2]
    assert set(partitions_of) == set(users)
    assert all(len(p) == 1 for p in partitions_of.values())
    assert len(set().union(*partitions_of.values())) > 1


async def test_binary_records_round_trip_as_base64(admin: Admin) -> None:
    rid = (await make_stream(admin, schema={"fields": [field("payload", "binary")]}))["rid"]
    data = bytes(range(256))
    status, _ = await admin.call(
        "POST", hs(rid, suffix="/publishBinaryRecord"), data=data, headers={"Content-Type": "application/octet-stream"}
    )
    assert status == 204
    _, records = await get_records(admin, rid)
    assert base64.b64decode(records[0]["value"]["payload"]) == data
    other = (await make_stream(admin, name="t"))["rid"]
    status, body = await admin.call("POST", hs(other, suffix="/publishBinaryRecord"), data=b"x")
    assert status == 400 and body["errorName"] == "RecordDoesNotMatchStreamSchema"


async def test_reset_gives_a_new_empty_view_and_old_view_is_gone(admin: Admin) -> None:
    created = await make_stream(admin, partitions=2)
    rid, old_view = created["rid"], created["viewRid"]
    await publish(admin, rid, [{"id": 1}, {"id": 2}])
    status, stream = await admin.call("POST", v2(rid, suffix="/reset"), params=PREVIEW, json={"partitionsCount": 3})
    assert status == 200, stream
    assert stream["viewRid"] != old_view and stream["partitionsCount"] == 3 and stream["schema"] == SCHEMA
    assert await end_offsets(admin, rid) == {"0": 0, "1": 0, "2": 0}
    status, body = await admin.call(
        "GET", hs(rid, suffix="/getRecords"), params={"partitionId": "0", "limit": "10", "viewRid": old_view, **PREVIEW}
    )
    assert status == 404
    assert_envelope(body, "ViewNotFound", "NOT_FOUND")
    status, body = await admin.call(
        "POST", hs(rid, suffix="/publishRecords"), json={"records": [{"id": 3}], "viewRid": old_view}
    )
    assert status == 404 and body["errorName"] == "ViewNotFound"
    status, _ = await admin.call(
        "POST", hs(rid, suffix="/publishRecords"), json={"records": [{"id": 3}], "viewRid": stream["viewRid"]}
    )
    assert status == 204


async def test_stream_proxy_base_serves_the_same_api(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    status, _ = await admin.call(
        "POST", hs(rid, suffix="/publishRecords", base="/stream-proxy/api"), json={"records": [{"id": 7}]}
    )
    assert status == 204
    status, records = await admin.call(
        "GET", hs(rid, suffix="/getRecords", base="/stream-proxy/api"), params={"partitionId": "0", **PREVIEW}
    )
    assert status == 200 and records == [{"offset": 0, "value": {"id": 7}}]
    status, stream = await admin.call("GET", v2(rid, base="/stream-proxy/api"))
    assert status == 200 and stream["branchName"] == "master"


async def test_job_tokens_reach_only_declared_streams(admin: Admin) -> None:
    source, sink, other = [(await make_stream(admin, name=n))["rid"] for n in ("in", "out", "other")]
    await publish(admin, source, [{"id": 1}])
    token = (await admin.job({"in": source}, {"out": sink}))["token"]

    status, records = await get_records(admin, source, token=token)
    assert status == 200 and len(records) == 1
    assert (await publish(admin, sink, [{"id": 2}], token=token))[0] == 204

    status, body = await publish(admin, source, [{"id": 2}], token=token)
    assert status == 403
    assert_envelope(body, "PublishRecordsToStreamPermissionDenied", "PERMISSION_DENIED")
    assert body["parameters"] == {"datasetRid": source, "streamBranchName": "master"}
    status, body = await get_records(admin, other, token=token)
    assert status == 403 and body["errorName"] == "GetRecordsFromStreamPermissionDenied"
    status, body = await publish(admin, other, [{"id": 2}], token=token)
    assert status == 403 and body["errorName"] == "PublishRecordsToStreamPermissionDenied"
    status, body = await admin.call("POST", v2(source, suffix="/reset"), token, params=PREVIEW, json={})
    assert status == 403 and body["errorName"] == "ResetStreamPermissionDenied"
    # The SDK documents 404 (not 403) from get for a stream the caller may not see.
    status, body = await admin.call("GET", v2(other), token)
    assert status == 404 and body["errorName"] == "StreamNotFound"
    status, body = await admin.call(
        "POST", CREATE, token, params=PREVIEW, json={"name": "n", "parentFolderRid": "f", "schema": SCHEMA}
    )
    assert status == 403 and body["errorName"] == "CreateStreamingDatasetPermissionDenied"
    assert await end_offsets(admin, source) == {"0": 1} and await end_offsets(admin, other) == {"0": 0}


async def test_missing_or_wrong_token_is_401(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    async with admin.session.get(f"{admin.fake.url}{v2(rid)}") as resp:
        assert resp.status == 401
        assert_envelope(await resp.json(), "Default:Unauthorized", "UNAUTHORIZED")
    status, body = await publish(admin, rid, [{"id": 1}], token="not-a-token")
    assert status == 401 and body["errorName"] == "Default:Unauthorized"


async def test_provenance_records_reads_and_writes(admin: Admin) -> None:
    source = (await make_stream(admin, name="in", partitions=2))["rid"]
    sink = (await make_stream(admin, name="out"))["rid"]
    await publish(admin, source, [{"id": i} for i in range(4)])
    job = await admin.job({"in": source}, {"out": sink})
    token = job["token"]

    await get_records(admin, source, partition=1, token=token)
    await get_records(admin, source, partition=1, start=99, token=token)  # empty: not recorded
    await publish(admin, sink, [{"id": 10}, {"id": 11}], token=token)
    await publish(admin, sink, [{"id": 12}, {"id": "bad"}], token=token)  # rejected: not recorded

    events = (await admin.provenance(job["jobRid"]))["events"]
    assert [(e["operation"], e["direction"], e["rid"], e["recordCount"]) for e in events] == [
        ("getRecords", "read", source, 2),
        ("publishRecords", "write", sink, 2),
    ]
    assert events[0]["offsets"] == {"1": [0, 1]} and events[1]["offsets"] == {"0": [0, 1]}
    assert events[1]["branch"] == "master" and events[1]["jobRid"] == job["jobRid"]


async def test_restart_loses_nothing(fake: FakeServer, admin: Admin) -> None:
    rid = (await make_stream(admin, partitions=2))["rid"]
    await publish(admin, rid, [{"id": i} for i in range(5)])
    await admin.call("POST", v2(rid, suffix="/subscribers"), params=PREVIEW, json={"subscriberId": "c"})
    status, committed = await admin.call(
        "POST", hs(rid, suffix="/subscribers/c/commitOffsets"), params=PREVIEW, json={"offsets": {"0": 1}}
    )
    assert status == 200 and committed == {"0": 2}
    before = await end_offsets(admin, rid)

    await fake.restart()

    assert await end_offsets(admin, rid) == before == {"0": 3, "1": 2}
    status, position = await admin.call("GET", hs(rid, suffix="/subscribers/c/getReadPosition"), params=PREVIEW)
    assert status == 200 and position == {"0": 2, "1": 0}
    # The round-robin cursor survived too: the next record continues where the last one left off.
    await publish(admin, rid, [{"id": 5}])
    assert await end_offsets(admin, rid) == {"0": 3, "1": 3}
    _, records = await get_records(admin, rid, 0)
    assert [r["value"]["id"] for r in records] == [0, 2, 4]


# The validator on its own, for every stream field type.

CASES: list[tuple[dict[str, Any], Any, bool]] = [
    ({"type": "string"}, "x", True),
    ({"type": "string"}, 1, False),
    ({"type": "integer"}, 2**31 - 1, True),
    ({"type": "integer"}, 2**31, False),
    ({"type": "integer"}, 1.5, False),
    ({"type": "integer"}, True, False),
    ({"type": "long"}, "-9223372036854775808", True),
    ({"type": "long"}, "12a", False),
    ({"type": "long"}, 2**63, False),
    ({"type": "short"}, -32768, True),
    ({"type": "short"}, 40000, False),
    ({"type": "byte"}, 127, True),
    ({"type": "byte"}, 128, False),
    ({"type": "double"}, 1, True),
    ({"type": "double"}, "NaN", True),
    ({"type": "double"}, "1.5", False),
    ({"type": "float"}, 1e39, False),
    ({"type": "boolean"}, False, True),
    ({"type": "boolean"}, 0, False),
    ({"type": "date"}, "2024-02-29", True),
    ({"type": "date"}, "2023-02-29", False),
    ({"type": "timestamp"}, 1_700_000_000_000, True),
    ({"type": "timestamp"}, "2024-01-01T00:00:00.123Z", True),
    ({"type": "timestamp"}, "yesterday", False),
    ({"type": "binary"}, base64.b64encode(b"\x00\xff").decode(), True),
    ({"type": "binary"}, "not base64!", False),
    ({"type": "decimal", "precision": 5, "scale": 2}, "123.45", True),
    ({"type": "decimal", "precision": 5, "scale": 2}, "1234.5", False),
    ({"type": "decimal", "precision": 5, "scale": 2}, 1.234, False),
    ({"type": "array", "itemsSchema": {"nullable": False, "dataType": {"type": "integer"}}}, [1, 2], True),
    ({"type": "array", "itemsSchema": {"nullable": False, "dataType": {"type": "integer"}}}, [1, None], False),
    (
        {
            "type": "map",
            "keySchema": {"nullable": False, "dataType": {"type": "integer"}},
            "valueSchema": {"nullable": True, "dataType": {"type": "string"}},
        },
        {"1": "a", "2": None},
        True,
    ),
    (
        {
            "type": "map",
            "keySchema": {"nullable": False, "dataType": {"type": "integer"}},
            "valueSchema": {"nullable": True, "dataType": {"type": "string"}},
        },
        {"one": "a"},
        False,
    ),
    ({"type": "struct", "subFields": [field("a", "integer", nullable=False)]}, {"a": 1}, True),
    ({"type": "struct", "subFields": [field("a", "integer", nullable=False)]}, {"a": 1, "b": 2}, False),
    ({"type": "struct", "subFields": [field("a", "integer", nullable=False)]}, {}, False),
]


@pytest.mark.parametrize(("data_type", "value", "ok"), CASES)
def test_record_validation_by_type(data_type: dict[str, Any], value: Any, ok: bool) -> None:
    schema = check_schema({"fields": [{"name": "v", "schema": {"nullable": True, "dataType": data_type}}]})
    if ok:
        validate_record(schema, {"v": value})
        validate_record(schema, {"v": None})
    else:
        with pytest.raises(RecordError):
            validate_record(schema, {"v": value})


def test_timestamp_keys_must_be_epoch_millis() -> None:
    schema = check_schema({"fields": [field("t", "timestamp", nullable=False)], "keyFieldNames": ["t"]})
    validate_record(schema, {"t": 1_700_000_000_000})
    with pytest.raises(RecordError):
        validate_record(schema, {"t": "2024-01-01T00:00:00Z"})


def test_schema_checks() -> None:
    for bad in ({}, {"fields": [{"name": "a"}]}, {"fields": [field("a", "integer"), field("a", "string")]}):
        with pytest.raises(SchemaError):
            check_schema(bad)


async def test_body_over_the_size_limit_is_413_and_stores_nothing(tmp_path: Path) -> None:
    async with FakeServer(tmp_path, max_body_bytes=4096) as fake, aiohttp.ClientSession() as session:
        small = Admin(fake, session)
        rid = (await make_stream(small, schema=None))["rid"]
        status, body = await publish(small, rid, [{"pad": "x" * 100} for _ in range(100)])  # ~12 KB
        assert status == 413
        assert body["errorCode"] == "REQUEST_ENTITY_TOO_LARGE"
        assert await end_offsets(small, rid) == {"0": 0}
        assert (await publish(small, rid, [{"pad": "x"}]))[0] == 204  # the limit is per request
