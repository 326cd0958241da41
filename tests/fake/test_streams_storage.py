"""The streams service's fast paths give what the plain ones gave: batch check, JSON parse, chunked records."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest

from fake_stream_proxy import FakeServer
from fake_stream_proxy.streams.compiled import compile_check
from fake_stream_proxy.streams.records import CHUNK_RECORDS
from fake_stream_proxy.streams.schema import check_schema, validate_record
from fake_stream_proxy.streams.wire import encode_records, parse_json
from tests.conftest import Admin
from tests.fake.stream_helpers import PREVIEW, end_offsets, field, get_records, hs, make_stream, publish
from tests.fake.test_streams_api import CASES

EXTRA_VALUES: list[Any] = [None, True, 0, -1, 2**63, 1.5, float("nan"), float("inf"), 1e39, "x", "NaN", [], {}]


@pytest.mark.parametrize(("data_type", "value", "_ok"), CASES)
def test_batch_check_accepts_only_what_validation_keeps_as_is(data_type: dict[str, Any], value: Any, _ok: bool) -> None:
    for nullable in (True, False):
        schema = check_schema({"fields": [{"name": "v", "schema": {"nullable": nullable, "dataType": data_type}}]})
        check = compile_check(schema)
        for candidate in [value, *EXTRA_VALUES]:
            records = [{"v": candidate}, {"v": copy.deepcopy(candidate)}]
            # False ("not sure") is always allowed: the store then validates record by record.
            if check(records):
                assert [validate_record(schema, r) for r in records] == records


def test_batch_check_needs_every_field_in_schema_order() -> None:
    schema = check_schema({"fields": [field("a", "long", nullable=False), field("b", "string")]})
    check = compile_check(schema)
    assert check([{"a": 1, "b": "x"}, {"a": 2, "b": None}])
    assert not check([{"b": "x", "a": 1}])  # validation reorders: let it
    assert not check([{"a": 1}])  # absent nullable field: validation decides
    assert not check([{"a": 1, "b": "x", "c": 0}])
    assert not check([["a"]])
    assert compile_check(None)([{"any": [1]}, {}]) and not compile_check(None)([{}, 1])


@pytest.mark.parametrize(
    "raw", [b'{"x": 1}', b'{"x": 18446744073709551616}', b'{"x": NaN}', b'{"x": "\\ud800"}', b"[1e400]", b'"\\u00e9"']
)
def test_parse_json_equals_the_stdlib(raw: bytes) -> None:
    value, strict = parse_json(raw, None)
    assert json.dumps(value) == json.dumps(json.loads(raw))
    if strict:
        assert raw in (b'{"x": 1}', b'"\\u00e9"')


async def test_values_orjson_cannot_keep_are_stored_as_the_stdlib_would(admin: Admin) -> None:
    rid = (await make_stream(admin, schema=None))["rid"]
    body = b'{"records": [{"big": 18446744073709551617}, {"nan": NaN, "s": "\\ud800"}]}'
    status, _ = await admin.call(
        "POST", hs(rid, suffix="/publishRecords"), data=body, headers={"Content-Type": "application/json"}
    )
    assert status == 204
    _, raw = await admin.call("GET", hs(rid, suffix="/getRecords"), params={"partitionId": "0", **PREVIEW})
    assert raw[0]["value"] == {"big": 18446744073709551617}
    assert str(raw[1]["value"]["nan"]) == "nan" and raw[1]["value"]["s"] == "\ud800"


async def test_a_long_past_64_bits_is_still_out_of_range(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    status, body = await publish(admin, rid, [{"id": 1}, {"id": 2**64}])
    assert status == 400 and "records[1].id: 18446744073709551616 is out of range for long" in str(body)


async def test_reads_across_chunks_and_restarts(fake: FakeServer, admin: Admin) -> None:
    rid = (await make_stream(admin, partitions=2))["rid"]
    count = CHUNK_RECORDS * 2 + 7  # more than one chunk per partition in one batch
    assert (await publish(admin, rid, [{"id": i} for i in range(count)]))[0] == 204
    for i in range(5):  # and one chunk per record
        assert (await publish(admin, rid, [{"id": count + i}]))[0] == 204
    await fake.restart()
    ends = await end_offsets(admin, rid)
    assert ends == {"0": (count + 5 + 1) // 2, "1": (count + 5) // 2}
    for partition in (0, 1):
        seen: list[int] = []
        start = 0
        while True:
            _, page = await get_records(admin, rid, partition, start=start, limit=333)
            if not page:
                break
            assert [r["offset"] for r in page] == list(range(start, start + len(page)))
            seen += [r["value"]["id"] for r in page]
            start += len(page)
        assert seen == list(range(partition, count + 5, 2))
    _, latest = await admin.call(
        "GET", f"/stream-proxy/api/streams/{rid}/branches/master/records", params={"limit": "1001"}
    )
    assert [r["offset"] for r in latest if r["partitionId"] == "0"] == list(range(ends["0"] - 1001, ends["0"]))


def test_batch_encoding_equals_one_record_at_a_time() -> None:
    records: list[dict[str, Any]] = [
        {"x": 1},
        {"s": "line\nbreak,\n,", "u": "\u00e9\u2028", "nested": [{"a": None}, [], {}]},
        {},
        {"f": 1.5e300, "n": -(2**63)},
    ]
    assert encode_records(records, strict=True) == [orjson.dumps(r) for r in records]
    assert encode_records(records[:1], strict=True) == [b'{"x":1}'] and encode_records([], strict=True) == []
    assert encode_records(records, strict=False) == [json.dumps(r, separators=(",", ":")).encode() for r in records]
