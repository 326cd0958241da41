"""Palantir's official SDK against the fake: wire shapes it parses into models, errors it raises typed.

The SDK is synchronous (httpx); calls run in a thread so the in-loop fake keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any, TypeVar

import foundry_sdk
import pytest
from foundry_sdk._core.hostname_supplier import ServiceDiscoveryHostnameSupplier, StaticHostnameSupplier
from foundry_sdk.v2.streams import errors as stream_errors
from foundry_sdk.v2.streams import models as stream_models
from foundry_sdk.v2.streams.stream import StreamClient

from fake_stream_proxy import FakeServer
from tests.conftest import Admin
from tests.fake.stream_helpers import SCHEMA, field, make_stream

T = TypeVar("T")

# The SDK methods this module calls against the fake (test_sdk_coverage.py collects them).
SDK_METHODS = {
    "streams.Dataset.create",
    *(f"streams.Stream.{m}" for m in ("create", "get", "get_end_offsets", "get_records", "publish_binary_record",
                                      "publish_record", "publish_records", "reset")),
    *(f"streams.Subscriber.{m}" for m in ("create", "read_records", "commit_offsets", "get_read_position",
                                          "reset_offsets", "delete")),
}  # fmt: skip


def client(fake: FakeServer, token: str | None = None) -> Any:
    return foundry_sdk.FoundryClient(
        auth=foundry_sdk.UserTokenAuth(token or fake.admin_token),
        hostname=f"127.0.0.1:{fake.port}",
        config=foundry_sdk.Config(scheme="http"),
    )


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def test_create_get_publish_read_and_reset(fake: FakeServer) -> None:
    streams = client(fake).streams.Dataset
    dataset = await call(
        streams.create,
        name="sdk-stream",
        parent_folder_rid="ri.compass.main.folder.sdk",
        schema=SCHEMA,
        partitions_count=2,
        preview=True,
    )
    assert isinstance(dataset, stream_models.Dataset) and dataset.rid.startswith("ri.foundry.main.dataset.")
    stream = await call(streams.Stream.get, dataset.rid, "master")
    assert isinstance(stream, stream_models.Stream)
    assert (stream.branch_name, stream.partitions_count, stream.stream_type) == ("master", 2, "LOW_LATENCY")
    assert [f.name for f in stream.schema_.fields] == ["id", "name"]

    await call(streams.Stream.publish_record, dataset.rid, "master", record={"id": 1, "name": "one"})
    await call(streams.Stream.publish_records, dataset.rid, "master", records=[{"id": 2}, {"id": "3"}])
    ends = await call(streams.Stream.get_end_offsets, dataset.rid, "master", preview=True)
    assert ends == {"0": 2, "1": 1}
    records = await call(
        streams.Stream.get_records, dataset.rid, "master", partition_id="0", limit=10, start_offset=0, preview=True
    )
    assert all(isinstance(r, stream_models.RecordWithOffset) for r in records)
    assert [(r.offset, r.value) for r in records] == [(0, {"id": 1, "name": "one"}), (1, {"id": 3})]

    branch = await call(
        streams.Stream.create, dataset.rid, branch_name="dev", schema=SCHEMA, partitions_count=1, preview=True
    )
    assert branch.branch_name == "dev" and branch.view_rid != stream.view_rid

    reset = await call(streams.Stream.reset, dataset.rid, "master", preview=True)
    assert reset.view_rid != stream.view_rid and reset.partitions_count == 2
    assert await call(streams.Stream.get_end_offsets, dataset.rid, "master", preview=True) == {"0": 0, "1": 0}
    # The SDK maps only the errors an endpoint declares; the rest arrive as the status class, with the name.
    with pytest.raises(foundry_sdk.NotFoundError) as gone:
        await call(streams.Stream.get_end_offsets, dataset.rid, "master", view_rid=stream.view_rid, preview=True)
    assert gone.value.name == "ViewNotFound"


async def test_binary_record(fake: FakeServer, admin: Admin) -> None:
    rid = (await make_stream(admin, schema={"fields": [field("blob", "binary")]}))["rid"]
    streams = client(fake).streams.Dataset
    await call(streams.Stream.publish_binary_record, rid, "master", b"\x00\x01binary\xff")
    records = await call(streams.Stream.get_records, rid, "master", partition_id="0", limit=1, preview=True)
    assert base64.b64decode(records[0].value["blob"]) == b"\x00\x01binary\xff"


async def test_subscriber_lifecycle(fake: FakeServer, admin: Admin) -> None:
    rid = (await make_stream(admin))["rid"]
    subscribers = client(fake).streams.Dataset.Stream.Subscriber
    await call(
        client(fake).streams.Dataset.Stream.publish_records, rid, "master", records=[{"id": i} for i in range(3)]
    )

    created = await call(subscribers.create, rid, "master", subscriber_id="sdk", preview=True)
    assert isinstance(created, stream_models.Subscriber)
    assert created.start_offsets == {"0": 0} and created.dataset_rid == rid

    batch = await call(subscribers.read_records, rid, "master", "sdk", limit=2, preview=True)
    assert isinstance(batch, stream_models.ReadSubscriberRecordsResponse)
    assert [r.offset for r in batch.records_by_partition["0"]] == [0, 1]
    committed = await call(subscribers.commit_offsets, rid, "master", "sdk", offsets={"0": 1}, preview=True)
    assert committed == {"0": 2}
    assert await call(subscribers.get_read_position, rid, "master", "sdk", preview=True) == {"0": 2}

    again = await call(
        subscribers.create,
        rid,
        "master",
        subscriber_id="sdk",
        read_position=stream_models.LatestPosition(),
        preview=True,
    )
    assert again.start_offsets == {"0": 0}
    batch = await call(subscribers.read_records, rid, "master", "sdk", auto_commit=True, preview=True)
    assert [r.value for r in batch.records_by_partition["0"]] == [{"id": 2}]

    position = stream_models.SpecificPosition(offsets={"0": 1})
    assert await call(subscribers.reset_offsets, rid, "master", "sdk", position=position, preview=True) == {"0": 1}
    earliest = stream_models.EarliestPosition()
    assert await call(subscribers.reset_offsets, rid, "master", "sdk", position=earliest, preview=True) == {"0": 0}

    assert await call(subscribers.delete, rid, "master", "sdk", preview=True) is None
    with pytest.raises(stream_errors.SubscriberNotFound):
        await call(subscribers.get_read_position, rid, "master", "sdk", preview=True)


async def test_errors_come_back_typed(fake: FakeServer, admin: Admin) -> None:
    source, sink, other = [(await make_stream(admin, name=n))["rid"] for n in ("in", "out", "other")]
    token = (await admin.job({"in": source}, {"out": sink}))["token"]
    streams = client(fake, token).streams.Dataset

    with pytest.raises(stream_errors.StreamNotFound) as not_found:
        await call(client(fake).streams.Dataset.Stream.get, source, "no-such-branch")
    assert not_found.value.parameters["streamBranchName"] == "no-such-branch"
    with pytest.raises(stream_errors.PublishRecordsToStreamPermissionDenied) as denied:
        await call(streams.Stream.publish_records, source, "master", records=[{"id": 1}])
    assert denied.value.parameters["datasetRid"] == source
    with pytest.raises(stream_errors.PublishRecordToStreamPermissionDenied):
        await call(streams.Stream.publish_record, other, "master", record={"id": 1})
    with pytest.raises(stream_errors.GetRecordsFromStreamPermissionDenied):
        await call(streams.Stream.get_records, other, "master", partition_id="0", limit=1, preview=True)
    with pytest.raises(stream_errors.GetEndOffsetsForStreamPermissionDenied):
        await call(streams.Stream.get_end_offsets, other, "master", preview=True)
    with pytest.raises(stream_errors.CreateSubscriberPermissionDenied):
        await call(streams.Stream.Subscriber.create, other, "master", subscriber_id="s", preview=True)
    with pytest.raises(foundry_sdk.PermissionDeniedError):
        await call(streams.Stream.reset, source, "master", preview=True)
    # Not among publishRecords' declared errors, so the SDK raises the status class carrying the name.
    with pytest.raises(foundry_sdk.BadRequestError) as mismatch:
        await call(streams.Stream.publish_records, sink, "master", records=[{"id": 1}, {"id": "x"}])
    assert mismatch.value.name == "RecordDoesNotMatchStreamSchema"
    with pytest.raises(foundry_sdk.RequestEntityTooLargeError) as too_large:
        await call(streams.Stream.publish_record, sink, "master", record={"id": 1, "name": "x" * 1_100_000})
    assert too_large.value.name == "RecordTooLarge"
    with pytest.raises(foundry_sdk.UnauthorizedError):
        await call(client(fake, "wrong-token").streams.Dataset.Stream.get, sink, "master")
    with pytest.raises(foundry_sdk.BadRequestError) as preview:
        await call(streams.Stream.get_end_offsets, sink, "master")
    assert preview.value.name == "ApiFeaturePreviewUsageOnly"


async def test_high_scale_calls_follow_service_discovery_to_the_stream_proxy_base(
    fake: FakeServer, admin: Admin
) -> None:
    rid = (await make_stream(admin))["rid"]
    # The api-gateway base points nowhere: only the stream-proxy base can answer the highScale calls.
    supplier = ServiceDiscoveryHostnameSupplier(
        {"api_gateway": ["http://127.0.0.1:9/api"], "stream_proxy": [f"{fake.url}/stream-proxy/api"]},
        fallback_supplier=StaticHostnameSupplier(fake.url, is_user_supplied=True),
    )
    streams: Any = StreamClient(auth=foundry_sdk.UserTokenAuth(fake.admin_token), hostname=supplier)
    await call(streams.publish_records, rid, "master", records=[{"id": 5}])
    records = await call(streams.get_records, rid, "master", partition_id="0", limit=5, preview=True)
    assert [r.value for r in records] == [{"id": 5}]
