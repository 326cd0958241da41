"""The fault kit over real sockets: each action, rate with a seed, next N, per-job targeting, clearing, counts."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest

from tests.conftest import Admin
from tests.fake.stream_helpers import PREVIEW, assert_envelope, end_offsets, get_records, hs, make_stream, publish, v2

PUBLISH = "*/publishRecords"


async def add_fault(admin: Admin, action: dict[str, Any], path: str = PUBLISH, **rule: Any) -> dict[str, Any]:
    match = {"method": rule.pop("method", "POST"), "path": path, "jobRid": rule.pop("job_rid", None)}
    status, body = await admin.call("POST", "/_fake/faults", json={"match": match, "action": action, **rule})
    assert status == 200, body
    result: dict[str, Any] = body
    return result


async def rules(admin: Admin) -> list[dict[str, Any]]:
    status, body = await admin.call("GET", "/_fake/faults")
    assert status == 200, body
    data: list[dict[str, Any]] = body["data"]
    return data


async def raw_answer(admin: Admin, method: str, path: str, **kwargs: Any) -> bytes:
    """The body of a 200 that claims to be JSON, unparsed."""
    async with admin.session.request(method, f"{admin.fake.url}{path}", headers=admin.headers, **kwargs) as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        return await resp.read()


async def stream_and_job(admin: Admin) -> tuple[str, str, str]:
    rid = (await make_stream(admin))["rid"]
    job = await admin.job({}, {"out": rid})
    return rid, job["jobRid"], job["token"]


@pytest.mark.parametrize(
    ("action", "status", "error_name", "retry_after"),
    [
        ({"status": 429, "retryAfterS": 2}, 429, "Default:TooManyRequests", "2"),
        ({"status": 500}, 500, "Default:Internal", None),
        ({"status": 503, "retryAfterS": 1}, 503, "Default:ServiceUnavailable", "1"),
        ({"status": 418, "errorName": "Teapot:Short"}, 418, "Teapot:Short", None),
    ],
)
async def test_status_faults_answer_an_envelope_and_apply_nothing(
    admin: Admin, action: dict[str, Any], status: int, error_name: str, retry_after: str | None
) -> None:
    rid = (await make_stream(admin))["rid"]
    rule = await add_fault(admin, action)
    async with admin.session.post(
        f"{admin.fake.url}{hs(rid, suffix='/publishRecords')}", json={"records": [{"id": 1}]}, headers=admin.headers
    ) as resp:
        assert resp.status == status
        assert resp.headers.get("Retry-After") == retry_after
        body = await resp.json()
    assert_envelope(body, error_name, "INTERNAL" if status >= 500 else body["errorCode"])
    assert rule["id"] in body["parameters"]["message"]
    assert await end_offsets(admin, rid) == {"0": 0}
    [listed] = await rules(admin)
    assert (listed["matched"], listed["fired"], listed["remaining"]) == (1, 1, None)


async def test_latency_delays_then_serves(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    await add_fault(admin, {"latencyMs": 300})
    started = time.monotonic()
    assert (await publish(admin, rid, [{"id": 1}]))[0] == 204
    assert time.monotonic() - started >= 0.3
    assert await end_offsets(admin, rid) == {"0": 1}


async def test_drop_before_closes_without_applying(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    await add_fault(admin, {"drop": "before"}, next=1)
    with pytest.raises(aiohttp.ClientConnectionError):
        await publish(admin, rid, [{"id": 1}])
    assert await end_offsets(admin, rid) == {"0": 0}
    assert (await publish(admin, rid, [{"id": 2}]))[0] == 204  # next=1: only once
    assert await end_offsets(admin, rid) == {"0": 1}


async def test_drop_after_applies_then_closes(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    await add_fault(admin, {"drop": "after"}, next=1)
    with pytest.raises(aiohttp.ClientConnectionError):
        await publish(admin, rid, [{"id": 1}])
    assert await end_offsets(admin, rid) == {"0": 1}  # landed, though the client never heard


async def test_garbage_bodies_after_applying(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    await publish(admin, rid, [{"id": i} for i in range(3)])
    await add_fault(admin, {"garbage": "not-json"}, next=1)
    body = {"records": [{"id": 3}]}
    assert (await raw_answer(admin, "POST", hs(rid, suffix="/publishRecords"), json=body)).startswith(b"<html>")
    assert await end_offsets(admin, rid) == {"0": 4}

    await add_fault(admin, {"garbage": "truncated"}, path="*/getRecords", method="GET", next=1)
    raw = await raw_answer(admin, "GET", hs(rid, suffix="/getRecords"), params={"partitionId": "0", **PREVIEW})
    assert raw.replace(b" ", b"").startswith(b'[{"offset":0')  # the first half of the real answer
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    assert len((await get_records(admin, rid))[1]) == 4  # the next read is whole


async def test_expire_token_for_n_requests_only_for_that_job(admin: Admin) -> None:
    rid, job_rid, token = await stream_and_job(admin)
    other = (await admin.job({}, {"out": rid}))["token"]
    rule = await add_fault(admin, {"expireToken": True}, path="*", method="*", job_rid=job_rid, next=2)
    for _ in range(2):
        status, body = await publish(admin, rid, [{"id": 1}], token)
        assert status == 401
        assert_envelope(body, "Default:Unauthorized", "UNAUTHORIZED")
    assert (await publish(admin, rid, [{"id": 1}], other))[0] == 204  # another job: not affected
    assert (await publish(admin, rid, [{"id": 1}], token))[0] == 204  # N used up
    assert (await publish(admin, rid, [{"id": 1}]))[0] == 204  # the admin never expires
    status, listed = await admin.call("GET", f"/_fake/faults/{rule['id']}")
    assert status == 200 and (listed["fired"], listed["remaining"]) == (2, 0)


async def test_expire_token_until_cleared(admin: Admin) -> None:
    rid, job_rid, token = await stream_and_job(admin)
    rule = await add_fault(admin, {"expireToken": True}, path="*", method="*", job_rid=job_rid)
    for _ in range(3):
        assert (await publish(admin, rid, [{"id": 1}], token))[0] == 401
    status, _ = await admin.call("DELETE", f"/_fake/faults/{rule['id']}")
    assert status == 204
    assert (await publish(admin, rid, [{"id": 1}], token))[0] == 204
    assert (await admin.call("DELETE", f"/_fake/faults/{rule['id']}"))[0] == 404


async def test_reset_stream_gives_a_new_view_then_serves(admin: Admin) -> None:
    stream = await make_stream(admin)
    rid = stream["rid"]
    await publish(admin, rid, [{"id": i} for i in range(3)])
    await add_fault(admin, {"resetStream": True}, next=1)
    assert (await publish(admin, rid, [{"id": 9}]))[0] == 204
    status, now = await admin.call("GET", v2(rid), params=PREVIEW)
    assert status == 200 and now["viewRid"] != stream["viewRid"]
    assert [r["value"] for r in (await get_records(admin, rid))[1]] == [{"id": 9}]


async def test_rate_with_a_seed_is_reproducible(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]

    async def pattern() -> list[int]:
        await add_fault(admin, {"status": 503}, rate=0.5, seed=7)
        statuses = [(await publish(admin, rid, [{"id": i}]))[0] for i in range(20)]
        [rule] = await rules(admin)
        assert rule["matched"] == 20 and rule["fired"] == statuses.count(503)
        assert (await admin.call("DELETE", "/_fake/faults"))[1] == {"removed": 1}
        return statuses

    first = await pattern()
    assert 0 < first.count(503) < 20 and set(first) == {204, 503}
    assert await pattern() == first


async def test_next_n_with_several_rules_and_regex(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    await add_fault(admin, {"status": 500}, next=2)
    await add_fault(admin, {"status": 429}, path="", next=1)  # empty glob: matches nothing
    regex = {"match": {"pathRegex": r"/getEndOffsets$"}, "action": {"status": 503}, "next": 1}
    assert (await admin.call("POST", "/_fake/faults", json=regex))[0] == 200
    assert [(await publish(admin, rid, [{"id": 1}]))[0] for _ in range(3)] == [500, 500, 204]
    status, _ = await admin.call("GET", hs(rid, suffix="/getEndOffsets"), params=PREVIEW)
    assert status == 503
    assert await end_offsets(admin, rid) == {"0": 1}
    assert [(r["fired"], r["remaining"]) for r in await rules(admin)] == [(2, 0), (0, 1), (1, 0)]


async def test_admin_routes_are_never_faulted_and_need_the_admin_token(admin: Admin) -> None:
    rid, _, token = await stream_and_job(admin)
    await add_fault(admin, {"status": 503}, path="*", method="*")
    assert (await admin.call("GET", "/_fake/health"))[0] == 200
    assert len(await rules(admin)) == 1
    assert (await admin.call("GET", "/_fake/faults", token))[0] == 403
    assert (await admin.call("POST", "/_fake/faults", token, json={"action": {"status": 500}}))[0] == 403
    assert (await publish(admin, rid, [{"id": 1}], token))[0] == 503


async def test_clear_all_or_per_job(admin: Admin) -> None:
    rid, job_rid, token = await stream_and_job(admin)
    await add_fault(admin, {"status": 500}, job_rid=job_rid)
    await add_fault(admin, {"status": 503}, path="*/getEndOffsets", method="GET")
    status, body = await admin.call("DELETE", "/_fake/faults", params={"jobRid": job_rid})
    assert status == 200 and body == {"removed": 1}
    assert (await publish(admin, rid, [{"id": 1}], token))[0] == 204
    assert [r["action"] for r in await rules(admin)] == [{"status": 503}]
    assert (await admin.call("DELETE", "/_fake/faults"))[1] == {"removed": 1}
    assert await rules(admin) == []


@pytest.mark.parametrize(
    "rule",
    [
        {},
        {"action": {}},
        {"action": {"status": 200}},
        {"action": {"status": 503, "latencyMs": 5}},
        {"action": {"drop": "sideways"}},
        {"action": {"latencyMs": -1}},
        {"action": {"expireToken": False}},
        {"action": {"status": 500, "extra": 1}},
        {"action": {"status": 500}, "rate": 2},
        {"action": {"status": 500}, "next": 0},
        {"action": {"status": 500}, "seed": "x"},
        {"action": {"status": 500}, "match": {"pathRegex": "("}},
        {"action": {"status": 500}, "match": {"host": "x"}},
        {"action": {"status": 500}, "later": True},
    ],
)
async def test_malformed_rules_are_400(admin: Admin, rule: dict[str, Any]) -> None:
    status, body = await admin.call("POST", "/_fake/faults", json=rule)
    assert status == 400, body
    assert_envelope(body, "InvalidFaultRule", "INVALID_ARGUMENT")
