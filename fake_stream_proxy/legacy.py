"""Legacy stream-proxy routes (foundry-api.md section 2b), as Palantir's compute-module examples call them.

Same streams, records and provenance as the v2 API: this module only reshapes requests and responses
around streams.py's `publish` and stream_store's reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .errors import bad_request, not_found
from .stream_store import Stream, get_stream_by_view, latest_records, parse_partition, read_records
from .streams import authorize, json_object, load_stream, publish, query_int, record_read

if TYPE_CHECKING:
    from .app import FakeContext

BASE = "/stream-proxy/api/streams/{rid}"
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000


class _LegacyApi:
    def __init__(self, ctx: FakeContext) -> None:
        self.ctx = ctx

    def _by_view(self, request: web.Request) -> Stream:
        rid, view_rid = request.match_info["rid"], request.match_info["viewRid"]
        stream = get_stream_by_view(self.ctx.storage, rid, view_rid)
        if stream is None:
            # Authenticate first, so an unknown token still gets 401 rather than a hint about views.
            self.ctx.auth.authenticate(request)
            raise not_found("ViewNotFound", viewRid=view_rid)
        return stream

    async def records(self, request: web.Request) -> web.Response:
        """The latest `limit` records of each partition, oldest first; each has the `value` the docs read."""
        rid, branch = request.match_info["rid"], request.match_info["branch"]
        principal = authorize(self.ctx, request, rid, branch, "read", "GetRecordsFromStreamPermissionDenied")
        stream = load_stream(self.ctx, rid, branch)
        limit = min(query_int(request, "limit", DEFAULT_LIMIT, minimum=1), MAX_LIMIT)
        result: list[dict[str, Any]] = []
        placed: list[tuple[int, int]] = []
        for partition in range(stream.partitions):
            for offset, value in latest_records(self.ctx.storage, stream.view_rid, partition, limit):
                result.append({"value": value, "offset": offset, "partitionId": str(partition)})
                placed.append((partition, offset))
        record_read(self.ctx, principal, stream, "legacy.records", placed)
        return web.json_response(result)

    async def json_record(self, request: web.Request) -> web.Response:
        """Body is the flat record itself."""
        rid, branch = request.match_info["rid"], request.match_info["branch"]
        principal = authorize(self.ctx, request, rid, branch, "write", "PublishRecordToStreamPermissionDenied")
        record = await json_object(request)
        stream = load_stream(self.ctx, rid, branch)
        [(partition, offset)] = publish(self.ctx, principal, stream, [record], "legacy.jsonRecord")
        return web.json_response({"offset": offset, "partitionId": str(partition)})

    async def json_records(self, request: web.Request) -> web.Response:
        """Body `[{"value": {...}}, ...]`; answers where each record landed, in order."""
        stream = self._by_view(request)
        principal = authorize(
            self.ctx, request, stream.rid, stream.branch, "write", "PublishRecordsToStreamPermissionDenied"
        )
        body = await request.json()
        if not isinstance(body, list) or not all(isinstance(item, dict) and "value" in item for item in body):
            raise bad_request("InvalidRequestBody", message='expected a list of {"value": {...}}')
        placed = publish(self.ctx, principal, stream, [item["value"] for item in body], "legacy.jsonRecords")
        return web.json_response(
            {
                "topic": stream.view_rid,
                "offsetAndPartitionIds": [{"offset": o, "partitionId": str(p)} for p, o in placed],
            }
        )

    async def records_v2(self, request: web.Request) -> web.Response:
        stream = self._by_view(request)
        principal = authorize(
            self.ctx, request, stream.rid, stream.branch, "read", "GetRecordsFromStreamPermissionDenied"
        )
        partition = parse_partition(stream, request.match_info["partition"])
        limit = min(query_int(request, "limit", DEFAULT_LIMIT, minimum=1), MAX_LIMIT)
        start = query_int(request, "startOffset", query_int(request, "offset", 0))
        records = read_records(self.ctx.storage, stream.view_rid, partition, start, limit)
        record_read(self.ctx, principal, stream, "legacy.recordsV2", [(partition, o) for o, _ in records])
        return web.json_response({"records": [{"offset": o, "value": v} for o, v in records]})


def setup(app: web.Application, ctx: FakeContext) -> None:
    api = _LegacyApi(ctx)
    app.router.add_get(BASE + "/branches/{branch}/records", api.records)
    app.router.add_post(BASE + "/branches/{branch}/jsonRecord", api.json_record)
    app.router.add_post(BASE + "/views/{viewRid}/jsonRecords", api.json_records)
    app.router.add_get(BASE + "/views/{viewRid}/partition/{partition}/recordsV2", api.records_v2)
