"""Stream subscribers (Streams API v2): server-side read positions, which give connectors at-least-once reads.

readRecords starts at the committed position and, without autoCommit, does not move it: a connector that
dies before commitOffsets reads the same records again. Re-creating an existing subscriber returns it with
its positions intact, so a restarted connector resumes where it committed.

Subscriber calls need only read access to the stream: a subscriber is the consumer's state, and connectors
subscribe to their inputs. (The SDK documents api:streams-write for some; a job token has no such scopes.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .auth import Principal
from .errors import bad_request, conflict, not_found
from .stream_store import (
    Positions,
    Stream,
    Subscriber,
    create_subscriber,
    delete_subscriber,
    end_offsets,
    get_subscriber,
    parse_offsets,
    parse_partition,
    positions,
    read_records,
    resolve_position,
    set_positions,
)
from .streams import (
    HIGH_SCALE,
    STREAMS,
    add_routes,
    authorize,
    json_object,
    load_stream,
    optional_str,
    path_stream,
    record_read,
    require_preview,
)

if TYPE_CHECKING:
    from .app import FakeContext

DEFAULT_READ_LIMIT = 100
MAX_READ_LIMIT = 1000
MAX_SUBSCRIBER_ID_LENGTH = 256


def _positions_json(offsets: Positions) -> dict[str, int]:
    return {str(p): o for p, o in sorted(offsets.items())}


class _SubscribersApi:
    def __init__(self, ctx: FakeContext) -> None:
        self.ctx = ctx

    def _authorize(self, request: web.Request, denied: str, subscriber_id: str) -> Principal:
        rid, branch = path_stream(request)
        principal = authorize(self.ctx, request, rid, branch, "read", denied, subscriberSubscriberId=subscriber_id)
        require_preview(request)
        return principal

    def _subscriber(self, stream: Stream, subscriber_id: str) -> Subscriber:
        subscriber = get_subscriber(self.ctx.storage, subscriber_id)
        if subscriber is None or (subscriber.rid, subscriber.branch) != (stream.rid, stream.branch):
            raise not_found("SubscriberNotFound", subscriberId=subscriber_id)
        return subscriber

    async def create(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        self.ctx.auth.authenticate(request)  # 401 before any complaint about the body
        body = await json_object(request)
        subscriber_id = body.get("subscriberId")
        if not isinstance(subscriber_id, str) or not 0 < len(subscriber_id) <= MAX_SUBSCRIBER_ID_LENGTH:
            raise bad_request("InvalidRequestBody", message="subscriberId must be a string of 1 to 256 characters")
        self._authorize(request, "CreateSubscriberPermissionDenied", subscriber_id)
        stream = load_stream(self.ctx, rid, branch)
        with self.ctx.storage.transaction():
            existing = get_subscriber(self.ctx.storage, subscriber_id)
            if existing is not None:
                if (existing.rid, existing.branch) != (rid, branch):
                    raise conflict(
                        "SubscriberAlreadyExists",
                        subscriberId=subscriber_id,
                        existingDatasetRid=existing.rid,
                        existingBranchName=existing.branch,
                    )
                # Idempotent: a restarted connector re-creates its subscriber and must keep its positions.
                return web.json_response(existing.to_json(stream.view_rid))
            position = body.get("readPosition") or {"type": "earliest"}
            subscriber = create_subscriber(self.ctx.storage, stream, subscriber_id, position)
        return web.json_response(subscriber.to_json(stream.view_rid))

    async def delete(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        subscriber_id = request.match_info["subscriberId"]
        self._authorize(request, "DeleteSubscriberPermissionDenied", subscriber_id)
        stream = load_stream(self.ctx, rid, branch)
        with self.ctx.storage.transaction():
            self._subscriber(stream, subscriber_id)
            delete_subscriber(self.ctx.storage, subscriber_id)
        return web.Response(status=204)

    async def read_records(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        subscriber_id = request.match_info["subscriberId"]
        principal = self._authorize(request, "ReadRecordsFromSubscriberPermissionDenied", subscriber_id)
        body = await json_object(request) if request.can_read_body else {}
        stream = load_stream(self.ctx, rid, branch, optional_str(body, "viewRid"))
        self._subscriber(stream, subscriber_id)
        limit = body.get("limit")
        if limit is None:
            limit = DEFAULT_READ_LIMIT
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise bad_request("InvalidRequestBody", message="limit must be a positive integer")
        limit = min(limit, MAX_READ_LIMIT)  # the SDK documents silent capping, not an error
        partition_ids = body.get("partitionIds")
        if partition_ids is None:
            selected = list(range(stream.partitions))
        elif isinstance(partition_ids, list):
            selected = sorted({parse_partition(stream, p) for p in partition_ids})
        else:
            raise bad_request("InvalidRequestBody", message="partitionIds must be a list")
        auto_commit = body.get("autoCommit") is True

        start = positions(self.ctx.storage, subscriber_id, stream)
        fetched = {p: read_records(self.ctx.storage, stream.view_rid, p, start[p], limit) for p in selected}
        taken = _interleave(fetched, limit)
        with self.ctx.storage.transaction():
            if auto_commit:
                moved = {p: records[-1][0] + 1 for p, records in taken.items() if records}
                set_positions(self.ctx.storage, subscriber_id, stream.view_rid, moved)
            placed = [(p, o) for p, records in taken.items() for o, _ in records]
            record_read(self.ctx, principal, stream, "readRecords", placed, subscriberId=subscriber_id)
        result = {str(p): [{"offset": o, "value": v} for o, v in records] for p, records in taken.items()}
        return web.json_response({"recordsByPartition": result})

    async def commit_offsets(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        subscriber_id = request.match_info["subscriberId"]
        self._authorize(request, "CommitSubscriberOffsetsPermissionDenied", subscriber_id)
        body = await json_object(request)
        stream = load_stream(self.ctx, rid, branch, optional_str(body, "viewRid"))
        self._subscriber(stream, subscriber_id)
        committed = parse_offsets(stream, body.get("offsets"), "offsets")
        ends = end_offsets(self.ctx.storage, stream)
        for partition, offset in committed.items():
            if offset >= ends[partition]:
                raise bad_request(
                    "Default:InvalidArgument",
                    message=f"offset {offset} was never written to partition {partition} (end {ends[partition]})",
                )
        # The caller passes the last offset it processed; the next read starts after it.
        moved = {p: o + 1 for p, o in committed.items()}
        with self.ctx.storage.transaction():
            set_positions(self.ctx.storage, subscriber_id, stream.view_rid, moved)
        return web.json_response(_positions_json(moved))

    async def get_read_position(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        subscriber_id = request.match_info["subscriberId"]
        self._authorize(request, "GetSubscriberReadPositionPermissionDenied", subscriber_id)
        stream = load_stream(self.ctx, rid, branch, request.query.get("viewRid"))
        self._subscriber(stream, subscriber_id)
        return web.json_response(_positions_json(positions(self.ctx.storage, subscriber_id, stream)))

    async def reset_offsets(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        subscriber_id = request.match_info["subscriberId"]
        self._authorize(request, "ResetSubscriberOffsetsPermissionDenied", subscriber_id)
        body = await json_object(request)
        stream = load_stream(self.ctx, rid, branch)
        self._subscriber(stream, subscriber_id)
        with self.ctx.storage.transaction():
            new = resolve_position(self.ctx.storage, stream, body.get("position"))
            set_positions(self.ctx.storage, subscriber_id, stream.view_rid, new)
        return web.json_response(_positions_json(new))


def _interleave(fetched: dict[int, list[tuple[int, Any]]], limit: int) -> dict[int, list[tuple[int, Any]]]:
    """Share `limit` across partitions round robin, so a backlog in one does not starve the others."""
    taken: dict[int, list[tuple[int, Any]]] = {p: [] for p in fetched}
    cursors = dict.fromkeys(fetched, 0)
    total = 0
    while total < limit:
        progressed = False
        for partition, records in fetched.items():
            if total < limit and cursors[partition] < len(records):
                taken[partition].append(records[cursors[partition]])
                cursors[partition] += 1
                total += 1
                progressed = True
        if not progressed:
            break
    return taken


def setup(app: web.Application, ctx: FakeContext) -> None:
    api = _SubscribersApi(ctx)
    subscribers = STREAMS + "/{branch}/subscribers"
    high_scale = HIGH_SCALE + "/subscribers/{subscriberId}"
    add_routes(
        app,
        [
            ("POST", subscribers, api.create),
            ("DELETE", subscribers + "/{subscriberId}", api.delete),
            ("POST", high_scale + "/readRecords", api.read_records),
            ("POST", high_scale + "/commitOffsets", api.commit_offsets),
            ("GET", high_scale + "/getReadPosition", api.get_read_position),
            ("POST", high_scale + "/resetOffsets", api.reset_offsets),
        ],
    )
