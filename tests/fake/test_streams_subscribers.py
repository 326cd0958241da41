"""Stream subscribers of the fake: at-least-once reads, commit semantics, resume after re-create or restart."""

from __future__ import annotations

from typing import Any

from fake_stream_proxy import FakeServer
from tests.conftest import Admin
from tests.fake.stream_helpers import PREVIEW, assert_envelope, hs, make_stream, publish, sub, v2


async def create(admin: Admin, rid: str, subscriber_id: str, token: str | None = None, **body: Any) -> tuple[int, Any]:
    return await admin.call(
        "POST", v2(rid, suffix="/subscribers"), token, params=PREVIEW, json={"subscriberId": subscriber_id, **body}
    )


async def read(admin: Admin, rid: str, subscriber_id: str, token: str | None = None, **body: Any) -> dict[str, Any]:
    status, result = await admin.call("POST", sub(rid, subscriber_id, "readRecords"), token, params=PREVIEW, json=body)
    assert status == 200, result
    by_partition: dict[str, Any] = result["recordsByPartition"]
    return by_partition


async def commit(admin: Admin, rid: str, subscriber_id: str, offsets: dict[str, int]) -> tuple[int, Any]:
    return await admin.call("POST", sub(rid, subscriber_id, "commitOffsets"), params=PREVIEW, json={"offsets": offsets})


async def position(admin: Admin, rid: str, subscriber_id: str) -> Any:
    status, body = await admin.call("GET", sub(rid, subscriber_id, "getReadPosition"), params=PREVIEW)
    assert status == 200, body
    return body


def offsets_of(by_partition: dict[str, Any], partition: str = "0") -> list[int]:
    return [r["offset"] for r in by_partition.get(partition, [])]


async def test_create_returns_the_subscriber_model(admin: Admin) -> None:
    stream = await make_stream(admin, partitions=2)
    await publish(admin, stream["rid"], [{"id": i} for i in range(3)])
    status, body = await create(admin, stream["rid"], "latest-one", readPosition={"type": "latest"})
    assert status == 200, body
    assert body == {
        "subscriberId": "latest-one",
        "readPosition": {"type": "latest"},
        "datasetRid": stream["rid"],
        "branchName": "master",
        "viewRid": stream["viewRid"],
        "startOffsets": {"0": 2, "1": 1},
        "createdTime": body["createdTime"],
    }
    assert body["createdTime"].endswith("Z")
    assert await read(admin, stream["rid"], "latest-one") == {"0": [], "1": []}


async def test_reading_without_commit_repeats_and_commit_moves_past_the_offset(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    await publish(admin, rid, [{"id": i} for i in range(5)])
    assert (await create(admin, rid, "c"))[0] == 200

    first = await read(admin, rid, "c", limit=3)
    assert offsets_of(first) == [0, 1, 2]
    assert first["0"][1]["value"] == {"id": 1}
    assert offsets_of(await read(admin, rid, "c", limit=3)) == [0, 1, 2]  # at-least-once: not moved

    status, body = await commit(admin, rid, "c", {"0": 2})
    assert status == 200 and body == {"0": 3}
    assert await position(admin, rid, "c") == {"0": 3}
    assert offsets_of(await read(admin, rid, "c")) == [3, 4]

    # Committing backwards replays; committing an offset never written is refused.
    assert (await commit(admin, rid, "c", {"0": 0}))[1] == {"0": 1}
    assert offsets_of(await read(admin, rid, "c", limit=1)) == [1]
    status, body = await commit(admin, rid, "c", {"0": 5})
    assert status == 400 and "never written" in body["parameters"]["message"]
    status, body = await commit(admin, rid, "c", {"7": 0})
    assert status == 400 and body["errorName"] == "Default:InvalidArgument"
    assert await position(admin, rid, "c") == {"0": 1}


async def test_auto_commit_moves_the_position(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    await publish(admin, rid, [{"id": i} for i in range(4)])
    await create(admin, rid, "auto")
    assert offsets_of(await read(admin, rid, "auto", limit=3, autoCommit=True)) == [0, 1, 2]
    assert offsets_of(await read(admin, rid, "auto", autoCommit=True)) == [3]
    assert await read(admin, rid, "auto") == {"0": []}
    assert await position(admin, rid, "auto") == {"0": 4}


async def test_recreating_a_subscriber_keeps_its_committed_position(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    await publish(admin, rid, [{"id": i} for i in range(4)])
    status, created = await create(admin, rid, "resume")
    await commit(admin, rid, "resume", {"0": 1})
    status, again = await create(admin, rid, "resume", readPosition={"type": "earliest"})
    assert status == 200 and again == created
    assert offsets_of(await read(admin, rid, "resume")) == [2, 3]


async def test_subscriber_ids_are_unique_across_streams(admin: Admin) -> None:
    first, second = (await make_stream(admin, name="a"))["rid"], (await make_stream(admin, name="b"))["rid"]
    await create(admin, first, "shared")
    status, body = await create(admin, second, "shared")
    assert status == 409
    assert_envelope(body, "SubscriberAlreadyExists", "CONFLICT")
    assert body["parameters"] == {"subscriberId": "shared", "existingDatasetRid": first, "existingBranchName": "master"}
    status, body = await admin.call("POST", sub(second, "shared", "readRecords"), params=PREVIEW, json={})
    assert status == 404 and body["errorName"] == "SubscriberNotFound"


async def test_reads_span_partitions_fairly_and_honour_partition_ids(admin: Admin) -> None:
    rid = (await make_stream(admin, partitions=2))["rid"]
    await publish(admin, rid, [{"id": i} for i in range(8)])  # 4 per partition
    await create(admin, rid, "p")
    both = await read(admin, rid, "p", limit=4)
    assert offsets_of(both, "0") == [0, 1] and offsets_of(both, "1") == [0, 1]
    only_one = await read(admin, rid, "p", partitionIds=["1"])
    assert list(only_one) == ["1"] and offsets_of(only_one, "1") == [0, 1, 2, 3]
    status, body = await admin.call("POST", sub(rid, "p", "readRecords"), params=PREVIEW, json={"partitionIds": ["9"]})
    assert status == 400 and body["errorName"] == "Default:InvalidArgument"


async def test_limit_defaults_to_100_and_is_capped_at_1000(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    assert (await publish(admin, rid, [{"id": i} for i in range(1100)]))[0] == 204
    await create(admin, rid, "big")
    assert len((await read(admin, rid, "big"))["0"]) == 100
    assert len((await read(admin, rid, "big", limit=5000))["0"]) == 1000


async def test_reset_offsets_to_each_position(admin: Admin) -> None:
    rid = (await make_stream(admin, partitions=2))["rid"]
    await publish(admin, rid, [{"id": i} for i in range(6)])
    await create(admin, rid, "r")

    async def reset(position: dict[str, Any]) -> tuple[int, Any]:
        return await admin.call("POST", sub(rid, "r", "resetOffsets"), params=PREVIEW, json={"position": position})

    assert await reset({"type": "latest"}) == (200, {"0": 3, "1": 3})
    assert await read(admin, rid, "r") == {"0": [], "1": []}
    assert await reset({"type": "specific", "offsets": {"1": 2}}) == (200, {"0": 0, "1": 2})
    assert await position(admin, rid, "r") == {"0": 0, "1": 2}
    assert await reset({"type": "earliest"}) == (200, {"0": 0, "1": 0})
    status, body = await reset({"type": "specific", "offsets": {"0": 4}})
    assert status == 400 and body["errorName"] == "Default:InvalidArgument"
    status, body = await reset({"type": "sideways"})
    assert status == 400 and body["errorName"] == "InvalidRequestBody"


async def test_delete_then_recreate_starts_fresh(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    await publish(admin, rid, [{"id": 1}, {"id": 2}])
    await create(admin, rid, "d")
    await commit(admin, rid, "d", {"0": 1})
    status, body = await admin.call("DELETE", v2(rid, suffix="/subscribers/d"), params=PREVIEW)
    assert status == 204 and body is None
    status, body = await admin.call("GET", sub(rid, "d", "getReadPosition"), params=PREVIEW)
    assert status == 404
    assert_envelope(body, "SubscriberNotFound", "NOT_FOUND")
    status, body = await admin.call("DELETE", v2(rid, suffix="/subscribers/d"), params=PREVIEW)
    assert status == 404
    await create(admin, rid, "d")
    assert offsets_of(await read(admin, rid, "d")) == [0, 1]


async def test_a_reset_stream_starts_subscribers_at_the_new_view(admin: Admin) -> None:
    stream = await make_stream(admin)
    rid = stream["rid"]
    await publish(admin, rid, [{"id": 1}, {"id": 2}])
    await create(admin, rid, "v")
    await commit(admin, rid, "v", {"0": 1})
    _, new = await admin.call("POST", v2(rid, suffix="/reset"), params=PREVIEW, json={})
    await publish(admin, rid, [{"id": 3}])
    assert [r["value"] for r in (await read(admin, rid, "v"))["0"]] == [{"id": 3}]
    status, body = await admin.call(
        "POST", sub(rid, "v", "readRecords"), params=PREVIEW, json={"viewRid": stream["viewRid"]}
    )
    assert status == 404 and body["errorName"] == "ViewNotFound"
    status, body = await create(admin, rid, "v")
    assert body["viewRid"] == new["viewRid"]


async def test_input_subscribers_for_jobs_and_provenance_of_reads(admin: Admin) -> None:
    source, other = (await make_stream(admin, name="in"))["rid"], (await make_stream(admin, name="x"))["rid"]
    await publish(admin, source, [{"id": 1}, {"id": 2}])
    job = await admin.job({"in": source}, {})
    token = job["token"]
    # Reading an input through a subscriber needs only read access.
    assert (await create(admin, source, "job-sub", token))[0] == 200
    assert offsets_of(await read(admin, source, "job-sub", token)) == [0, 1]
    status, body = await admin.call(
        "POST", sub(source, "job-sub", "commitOffsets"), token, params=PREVIEW, json={"offsets": {"0": 1}}
    )
    assert status == 200
    assert await read(admin, source, "job-sub", token) == {"0": []}  # empty: no provenance

    status, body = await create(admin, other, "nope", token)
    assert status == 403
    assert_envelope(body, "CreateSubscriberPermissionDenied", "PERMISSION_DENIED")
    assert body["parameters"]["subscriberSubscriberId"] == "nope"
    events = (await admin.provenance(job["jobRid"]))["events"]
    assert [(e["operation"], e["direction"], e["recordCount"], e["offsets"]) for e in events] == [
        ("readRecords", "read", 2, {"0": [0, 1]})
    ]
    assert events[0]["subscriberId"] == "job-sub"


async def test_positions_survive_a_restart(fake: FakeServer, admin: Admin) -> None:
    rid = (await make_stream(admin, partitions=2))["rid"]
    await publish(admin, rid, [{"id": i} for i in range(6)])
    await create(admin, rid, "durable")
    await read(admin, rid, "durable", autoCommit=True, partitionIds=["0"])
    await commit(admin, rid, "durable", {"1": 0})

    await fake.restart()

    assert await position(admin, rid, "durable") == {"0": 3, "1": 1}
    assert (await create(admin, rid, "durable"))[0] == 200
    assert offsets_of(await read(admin, rid, "durable"), "1") == [1, 2]
    assert offsets_of(await read(admin, rid, "durable"), "0") == []


async def test_subscriber_calls_need_preview(admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    status, body = await admin.call("POST", v2(rid, suffix="/subscribers"), json={"subscriberId": "x"})
    assert status == 400 and body["errorName"] == "ApiFeaturePreviewUsageOnly"
    status, body = await admin.call("POST", hs(rid, suffix="/subscribers/x/readRecords"), json={})
    assert status == 400 and body["errorName"] == "ApiFeaturePreviewUsageOnly"


async def test_only_the_job_that_created_a_subscriber_may_move_reset_or_delete_it(admin: Admin) -> None:
    source = (await make_stream(admin, "owned"))["rid"]
    await publish(admin, source, [{"id": i} for i in range(3)])
    owner = (await admin.job({"in": source}, {}))["token"]
    other = (await admin.job({"in": source}, {}))["token"]
    assert (await create(admin, source, "mine", owner))[0] == 200
    # The other job may see it (re-create is idempotent, reads without commit do not move it) ...
    assert (await create(admin, source, "mine", other))[0] == 200
    assert offsets_of(await read(admin, source, "mine", other)) == [0, 1, 2]
    assert await position(admin, source, "mine") == {"0": 0}
    # ... but not change it.
    denied = [
        ("commitOffsets", {"offsets": {"0": 1}}, "CommitSubscriberOffsetsPermissionDenied"),
        ("resetOffsets", {"position": {"type": "latest"}}, "ResetSubscriberOffsetsPermissionDenied"),
        ("readRecords", {"autoCommit": True}, "ReadRecordsFromSubscriberPermissionDenied"),
    ]
    for action, body, error_name in denied:
        status, answer = await admin.call("POST", sub(source, "mine", action), other, params=PREVIEW, json=body)
        assert status == 403, (action, answer)
        assert_envelope(answer, error_name, "PERMISSION_DENIED")
        assert answer["parameters"]["subscriberSubscriberId"] == "mine"
    status, answer = await admin.call("DELETE", v2(source, suffix="/subscribers/mine"), other, params=PREVIEW)
    assert status == 403
    assert_envelope(answer, "DeleteSubscriberPermissionDenied", "PERMISSION_DENIED")
    assert await position(admin, source, "mine") == {"0": 0}
    # The owner may, and so may the admin.
    for action, body, _ in denied:
        status, answer = await admin.call("POST", sub(source, "mine", action), owner, params=PREVIEW, json=body)
        assert status == 200, (action, answer)
    assert (await commit(admin, source, "mine", {"0": 0}))[0] == 200
    status, _ = await admin.call("DELETE", v2(source, suffix="/subscribers/mine"), owner, params=PREVIEW)
    assert status == 204
    # A subscriber the admin created has no owner: any job that can read the stream may use it.
    assert (await create(admin, source, "shared"))[0] == 200
    status, _ = await admin.call(
        "POST", sub(source, "shared", "commitOffsets"), other, params=PREVIEW, json={"offsets": {"0": 0}}
    )
    assert status == 200
