"""The streams service's route tables: v2 (with subscribers) under two bases, legacy under one."""

from __future__ import annotations

from ..context import FakeContext
from ..routing import RouteTable, table
from .handlers import StreamHandlers, SubscriberHandlers
from .legacy import LegacyHandlers
from .store import StreamStore
from .subscribers import SubscriberStore

# `/api` is what the SDK's static hostname uses (highScale included); `/stream-proxy/api` is the
# `stream_proxy` base of service discovery. The legacy routes exist only below the latter.
V2_BASES = ("/api", "/stream-proxy/api")
LEGACY_BASES = ("/stream-proxy/api",)

STREAMS = "/v2/streams/datasets"
STREAM_ROUTES = """
    POST    /create                                              create_dataset
    POST    /{rid}/streams                                       create_stream
    GET     /{rid}/streams/{branch}                              get_stream
    POST    /{rid}/streams/{branch}/reset                        reset
"""
SUBSCRIBER_ROUTES = """
    POST    /{rid}/streams/{branch}/subscribers                  create
    DELETE  /{rid}/streams/{branch}/subscribers/{subscriberId}   delete
"""

HIGH_SCALE = "/v2/highScale/streams/datasets/{rid}/streams/{branch}"
HIGH_SCALE_ROUTES = """
    POST    /publishRecord                                       publish_record
    POST    /publishRecords                                      publish_records
    POST    /publishBinaryRecord                                 publish_binary_record
    GET     /getRecords                                          get_records
    GET     /getEndOffsets                                       get_end_offsets
"""
HIGH_SCALE_SUBSCRIBER_ROUTES = """
    POST    /subscribers/{subscriberId}/readRecords              read_records
    POST    /subscribers/{subscriberId}/commitOffsets            commit_offsets
    GET     /subscribers/{subscriberId}/getReadPosition          get_read_position
    POST    /subscribers/{subscriberId}/resetOffsets             reset_offsets
"""

LEGACY = "/streams/{rid}"
LEGACY_ROUTES = """
    GET     /branches/{branch}/records                           records
    POST    /branches/{branch}/jsonRecord                        json_record
    POST    /views/{viewRid}/jsonRecords                         json_records
    GET     /views/{viewRid}/partition/{partition}/recordsV2     records_v2
"""


def route_tables(ctx: FakeContext) -> list[RouteTable]:
    store = StreamStore(ctx.storage, ctx.provenance)
    v2 = StreamHandlers(ctx, store)
    subscribers = SubscriberHandlers(ctx, store, SubscriberStore(store))
    ctx.resource_creators["stream"] = v2.create_for_admin
    ctx.auth.branch_checks["stream"] = lambda rid, branch: store.find(rid, branch) is not None  # job declarations
    ctx.stream_reset = lambda rid, branch: store.reset(rid, branch, {})  # the fault kit's resetStream
    # The v2 routes never answered HEAD (head=False); the legacy ones did.
    return [
        table(V2_BASES, v2, STREAM_ROUTES, prefix=STREAMS, head=False),
        table(V2_BASES, v2, HIGH_SCALE_ROUTES, prefix=HIGH_SCALE, head=False),
        table(V2_BASES, subscribers, SUBSCRIBER_ROUTES, prefix=STREAMS, head=False),
        table(V2_BASES, subscribers, HIGH_SCALE_SUBSCRIBER_ROUTES, prefix=HIGH_SCALE, head=False),
        table(LEGACY_BASES, LegacyHandlers(ctx, store), LEGACY_ROUTES, prefix=LEGACY),
    ]
