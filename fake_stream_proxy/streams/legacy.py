"""Legacy stream-proxy handlers (foundry-api.md section 2b), as Palantir's compute-module examples call them.

Same streams, records and provenance as the v2 API: these only reshape requests and responses around
StreamStore's `publish` and reads.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..auth import Auth
from ..context import FakeContext
from ..errors import bad_request, not_found
from ..params import json_object, query_int, read_json
from .handlers import authorize_stream
from .store import Stream, StreamStore

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
        result: list[dict[str, Any]] = []
        placed: list[tuple[int, int]] = []
        for partition in range(stream.partitions):
            for offset, value in self.store.latest(stream, partition, limit):
                result.append({"value": value, "offset": offset, "partitionId": str(partition)})
                placed.append((partition, offset))
        self.store.record_read(principal, stream, "legacy.records", placed)
        return web.json_response(result)

    async def json_record(self, request: web.Request) -> web.Response:
        """Body is the flat record itself."""
        rid, branch = request.match_info["rid"], request.match_info["branch"]
        principal = authorize_stream(self.auth, request, rid, branch, "write", "PublishRecordToStreamPermissionDenied")
        record = await json_object(request)
        stream = self.store.stream(rid, branch)
        [(partition, offset)] = self.store.publish(principal, stream, [record], "legacy.jsonRecord")
        return web.json_response({"offset": offset, "partitionId": str(partition)})

    async def json_records(self, request: web.Request) -> web.Response:
        """Body `[{"value": {...}}, ...]`; answers where each record landed, in order."""
        stream = self._by_view(request)
        principal = authorize_stream(
            self.auth, request, stream.rid, stream.branch, "write", "PublishRecordsToStreamPermissionDenied"
        )
        body = await read_json(request)
        if not isinstance(body, list) or not all(isinstance(item, dict) and "value" in item for item in body):
            raise bad_request("InvalidRequestBody", message='expected a list of {"value": {...}}')
        placed = self.store.publish(principal, stream, [item["value"] for item in body], "legacy.jsonRecords")
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
        self.store.record_read(principal, stream, "legacy.recordsV2", [(partition, o) for o, _ in records])
        return web.json_response({"records": [{"offset": o, "value": v} for o, v in records]})
