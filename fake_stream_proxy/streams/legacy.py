"""Legacy stream-proxy handlers, as Palantir's compute-module examples call them.

Same streams, records and provenance as the v2 API: these only reshape requests and responses around
StreamStore's `publish` and reads.
"""

from __future__ import annotations

from aiohttp import web

from ..auth import Auth
from ..context import FakeContext
from ..errors import bad_request, not_found
from ..params import query_int
from .handlers import authorize_stream
from .store import Stream, StreamStore
from .wire import Records, json_body, json_list, json_response, latest_values, offset_values

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000


class LegacyHandlers:
    def __init__(self, ctx: FakeContext, store: StreamStore) -> None:
        self.auth: Auth = ctx.auth
        self.store = store

    def _by_view(self, request: web.Request) -> Stream:
        rid, view_rid = request.match_info["rid"], request.match_info["viewRid"]
        stream = self.store.find_by_view(rid, view_rid)
        if stream is None:
            # Authenticate first, so an unknown token still gets 401 rather than a hint about views.
            self.auth.authenticate(request)
            raise not_found("ViewNotFound", viewRid=view_rid)
        return stream

    async def records(self, request: web.Request) -> web.Response:
        """The latest `limit` records of each partition, oldest first; each has the `value` the docs read."""
        rid, branch = request.match_info["rid"], request.match_info["branch"]
        principal = authorize_stream(self.auth, request, rid, branch, "read", "GetRecordsFromStreamPermissionDenied")
        stream = self.store.stream(rid, branch)
        limit = min(query_int(request, "limit", DEFAULT_LIMIT, minimum=1), MAX_LIMIT)
        taken: dict[int, Records] = {p: self.store.latest(stream, p, limit) for p in range(stream.partitions)}
        self.store.record_read(principal, stream, "legacy.records", taken)
        return json_response(latest_values((p, o, v) for p, records in taken.items() for o, v in records))

    async def json_record(self, request: web.Request) -> web.Response:
        """Body is the flat record itself."""
        rid, branch = request.match_info["rid"], request.match_info["branch"]
        principal = authorize_stream(self.auth, request, rid, branch, "write", "PublishRecordToStreamPermissionDenied")
        record, strict = await json_body(request)
        stream = self.store.stream(rid, branch)
        [(partition, offset)] = self.store.publish(principal, stream, [record], "legacy.jsonRecord", strict=strict)
        return web.json_response({"offset": offset, "partitionId": str(partition)})

    async def json_records(self, request: web.Request) -> web.Response:
        """Body `[{"value": {...}}, ...]`; answers where each record landed, in order."""
        stream = self._by_view(request)
        principal = authorize_stream(
            self.auth, request, stream.rid, stream.branch, "write", "PublishRecordsToStreamPermissionDenied"
        )
        body, strict = await json_list(request)
        if not isinstance(body, list) or not all(isinstance(item, dict) and "value" in item for item in body):
            raise bad_request("InvalidRequestBody", message='expected a list of {"value": {...}}')
        values = [item["value"] for item in body]
        placed = self.store.publish(principal, stream, values, "legacy.jsonRecords", strict=strict)
        return web.json_response(
            {
                "topic": stream.view_rid,
                "offsetAndPartitionIds": [{"offset": o, "partitionId": str(p)} for p, o in placed],
            }
        )

    async def records_v2(self, request: web.Request) -> web.Response:
        stream = self._by_view(request)
        principal = authorize_stream(
            self.auth, request, stream.rid, stream.branch, "read", "GetRecordsFromStreamPermissionDenied"
        )
        partition = stream.partition(request.match_info["partition"])
        limit = min(query_int(request, "limit", DEFAULT_LIMIT, minimum=1), MAX_LIMIT)
        start = query_int(request, "startOffset", query_int(request, "offset", 0))
        records = self.store.records(stream, partition, start, limit)
        self.store.record_read(principal, stream, "legacy.recordsV2", {partition: records})
        return json_response(b'{"records":' + offset_values(records) + b"}")
