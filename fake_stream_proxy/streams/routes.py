"""The streams service's route tables: v2 (with subscribers) under two bases, legacy under one."""

from __future__ import annotations

from ..context import FakeContext
from ..routing import RouteTable
from .handlers import StreamHandlers, SubscriberHandlers
from .legacy import LegacyHandlers
from .store import StreamStore
from .subscribers import SubscriberStore

# `/api` is what the SDK's static hostname uses (highScale included); `/stream-proxy/api` is the
# `stream_proxy` base of service discovery.
V2_BASES = ("/api", "/stream-proxy/api")
LEGACY_BASES = ("/stream-proxy/api",)
STREAMS = "/v2/streams/datasets/{rid}/streams"
HIGH_SCALE = "/v2/highScale/streams/datasets/{rid}/streams/{branch}"
SUBSCRIBER = HIGH_SCALE + "/subscribers/{subscriberId}"
LEGACY = "/streams/{rid}"


def route_tables(ctx: FakeContext) -> list[RouteTable]:
    store = StreamStore(ctx.storage, ctx.provenance)
    v2 = StreamHandlers(ctx, store)
    subs = SubscriberHandlers(ctx, store, SubscriberStore(store))
    legacy = LegacyHandlers(ctx, store)
    ctx.resource_creators["stream"] = v2.create_for_admin
    return [
        RouteTable(
            V2_BASES,
            [
                ("POST", "/v2/streams/datasets/create", v2.create_dataset),
                ("POST", STREAMS, v2.create_stream),
                ("GET", STREAMS + "/{branch}", v2.get_stream),
                ("POST", STREAMS + "/{branch}/reset", v2.reset),
                ("POST", HIGH_SCALE + "/publishRecord", v2.publish_record),
                ("POST", HIGH_SCALE + "/publishRecords", v2.publish_records),
                ("POST", HIGH_SCALE + "/publishBinaryRecord", v2.publish_binary_record),
                ("GET", HIGH_SCALE + "/getRecords", v2.get_records),
                ("GET", HIGH_SCALE + "/getEndOffsets", v2.get_end_offsets),
                ("POST", STREAMS + "/{branch}/subscribers", subs.create),
                ("DELETE", STREAMS + "/{branch}/subscribers/{subscriberId}", subs.delete),
                ("POST", SUBSCRIBER + "/readRecords", subs.read_records),
                ("POST", SUBSCRIBER + "/commitOffsets", subs.commit_offsets),
                ("GET", SUBSCRIBER + "/getReadPosition", subs.get_read_position),
                ("POST", SUBSCRIBER + "/resetOffsets", subs.reset_offsets),
            ],
            head=False,
        ),
        RouteTable(
            LEGACY_BASES,
            [
                ("GET", LEGACY + "/branches/{branch}/records", legacy.records),
                ("POST", LEGACY + "/branches/{branch}/jsonRecord", legacy.json_record),
                ("POST", LEGACY + "/views/{viewRid}/jsonRecords", legacy.json_records),
                ("GET", LEGACY + "/views/{viewRid}/partition/{partition}/recordsV2", legacy.records_v2),
            ],
        ),
    ]
