"""Streams API v2 (foundry-api.md section 2a): streaming datasets, streams, publishing and reading records.

Served under both `/api` (what the SDK's static hostname uses, highScale included) and `/stream-proxy/api`
(the `stream_proxy` base of service discovery). Where foundry-api.md and the official SDK differ, the SDK
wins: error names and their parameters are the ones the SDK deserialises into typed exceptions, and every
endpoint whose SDK method takes `preview` answers 400 ApiFeaturePreviewUsageOnly without `preview=true`,
as Foundry does for beta endpoints (foundry-api.md lists preview for fewer). Also from the SDK: get answers
404 StreamNotFound (not 403) for a stream the caller may not see; getRecords caps `limit` at a server
limit; permission errors carry datasetRid/streamBranchName. Subscriber endpoints: stream_subscribers.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .auth import Access, Principal
from .errors import ApiError, bad_request, conflict, not_found, permission_denied
from .stream_schema import RecordError, SchemaError, binary_field, check_schema, validate_record
from .stream_store import (
    SCHEMA,
    STREAM_TYPES,
    Stream,
    append_records,
    create_stream,
    end_offsets,
    get_stream,
    parse_partition,
    read_records,
    reset_stream,
)

if TYPE_CHECKING:
    from .app import FakeContext

API_BASES = ("/api", "/stream-proxy/api")
STREAMS = "/v2/streams/datasets/{rid}/streams"
HIGH_SCALE = "/v2/highScale/streams/datasets/{rid}/streams/{branch}"
# Foundry's documented per-record limit on most enrollments.
MAX_RECORD_BYTES = 1024 * 1024
# getRecords is a "server-defined limit" in the SDK; a small one makes clients page like they must on Foundry.
MAX_GET_RECORDS = 1000
MAX_PARTITIONS = 64

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Helpers shared with stream_subscribers.py and legacy.py.


def add_routes(app: web.Application, routes: list[tuple[str, str, Handler]]) -> None:
    for method, path, handler in routes:
        for base in API_BASES:
            app.router.add_route(method, base + path, handler)


def authorize(
    ctx: FakeContext, request: web.Request, rid: str, branch: str, access: Access, denied: str, **params: Any
) -> Principal:
    """Auth's check, re-raised with the parameters the SDK's typed `...PermissionDenied` errors require."""
    try:
        return ctx.auth.authorize(request, rid, access, denied, branch)
    except ApiError as exc:
        if exc.status != 403:
            raise
        raise permission_denied(denied, datasetRid=rid, streamBranchName=branch, **params) from None


def require_preview(request: web.Request) -> None:
    if request.query.get("preview", "").lower() != "true":
        raise bad_request("ApiFeaturePreviewUsageOnly", message="this endpoint needs preview=true")


def load_stream(ctx: FakeContext, rid: str, branch: str, view_rid: str | None = None) -> Stream:
    """The stream on `branch`; 404 StreamNotFound, or 404 ViewNotFound for a view that is not current."""
    stream = get_stream(ctx.storage, rid, branch)
    if stream is None:
        raise not_found("StreamNotFound", datasetRid=rid, streamBranchName=branch)
    if view_rid is not None and view_rid != stream.view_rid:
        raise not_found("ViewNotFound", viewRid=view_rid)
    return stream


def path_stream(request: web.Request) -> tuple[str, str]:
    return request.match_info["rid"], request.match_info["branch"]


async def json_object(request: web.Request) -> dict[str, Any]:
    body = await request.json()
    if not isinstance(body, dict):
        raise bad_request("InvalidRequestBody", message="expected a JSON object")
    return body


def optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_request("InvalidRequestBody", message=f"{key} must be a string")
    return value


def query_int(request: web.Request, name: str, default: int | None, minimum: int = 0) -> int:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise bad_request("Default:InvalidArgument", message=f"query parameter {name} is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise bad_request("Default:InvalidArgument", message=f"{name} must be an integer >= {minimum}")
    return value


def offset_spans(placed: list[tuple[int, int]]) -> dict[str, list[int]]:
    """{partition: [first, last]} for provenance."""
    spans: dict[str, list[int]] = {}
    for partition, offset in placed:
        span = spans.setdefault(str(partition), [offset, offset])
        span[0], span[1] = min(span[0], offset), max(span[1], offset)
    return spans


def publish(
    ctx: FakeContext, principal: Principal, stream: Stream, records: list[Any], operation: str
) -> list[tuple[int, int]]:
    """Validate every record first, then store the batch and its provenance event in one transaction."""
    validated: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        path = "record" if len(records) == 1 else f"records[{index}]"
        try:
            value = validate_record(stream.schema, record, path)
        except RecordError as exc:
            raise bad_request(
                "RecordDoesNotMatchStreamSchema",
                datasetRid=stream.rid,
                branchName=stream.branch,
                viewRid=stream.view_rid,
                message=str(exc),
            ) from None
        size = len(json_bytes(value))
        if size > MAX_RECORD_BYTES:
            raise ApiError(413, "RecordTooLarge", message=f"{path} is {size} bytes, over {MAX_RECORD_BYTES}")
        validated.append(value)
    if not validated:
        return []
    with ctx.storage.transaction():
        placed = append_records(ctx.storage, stream, validated)
        ctx.provenance.record(
            principal,
            rid=stream.rid,
            branch=stream.branch,
            operation=operation,
            direction="write",
            record_count=len(placed),
            offsets=offset_spans(placed),
            viewRid=stream.view_rid,
        )
    return placed


def record_read(
    ctx: FakeContext, principal: Principal, stream: Stream, operation: str, placed: list[tuple[int, int]], **extra: Any
) -> None:
    """A provenance event for a read that returned records (empty polls are not recorded)."""
    if placed:
        ctx.provenance.record(
            principal,
            rid=stream.rid,
            branch=stream.branch,
            operation=operation,
            direction="read",
            record_count=len(placed),
            offsets=offset_spans(placed),
            viewRid=stream.view_rid,
            **extra,
        )


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# Stream settings shared by create, reset and the admin creator.


def parse_schema(raw: Any) -> dict[str, Any]:
    try:
        return check_schema(raw)
    except SchemaError as exc:
        if exc.field is not None:
            raise bad_request("InvalidFieldSchema", fieldName=exc.field, message=exc.message) from None
        raise bad_request("InvalidSchema", errorType="INVALID_SCHEMA", message=exc.message) from None


def parse_settings(body: dict[str, Any], partitions_key: str = "partitionsCount") -> dict[str, Any]:
    """Only the settings present in `body`, checked; reset keeps the current value of absent ones."""
    settings: dict[str, Any] = {}
    if body.get("schema") is not None:
        settings["schema"] = parse_schema(body["schema"])
    if body.get(partitions_key) is not None:
        count = body[partitions_key]
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PARTITIONS:
            raise bad_request("InvalidRequestBody", message=f"{partitions_key} must be from 1 to {MAX_PARTITIONS}")
        settings["partitions"] = count
    if body.get("streamType") is not None:
        if body["streamType"] not in STREAM_TYPES:
            raise bad_request("InvalidStreamType", streamType=str(body["streamType"]))
        settings["stream_type"] = body["streamType"]
    if body.get("compressed") is not None:
        if not isinstance(body["compressed"], bool):
            raise bad_request("InvalidRequestBody", message="compressed must be a boolean")
        settings["compressed"] = body["compressed"]
    return settings


def _new_stream(ctx: FakeContext, rid: str, branch: str, settings: dict[str, Any]) -> Stream:
    if get_stream(ctx.storage, rid, branch) is not None:
        raise conflict("BranchAlreadyExists", datasetRid=rid, branchName=branch)
    return create_stream(ctx.storage, rid, branch, **settings)


def _new_dataset_rid() -> str:
    from .app import new_rid  # app imports this module at load time

    return new_rid("foundry.main.dataset")


def create_from_admin(ctx: FakeContext, body: dict[str, Any]) -> dict[str, Any]:
    """`POST /_fake/resources {"type": "stream", ...}`; no schema means any JSON object is accepted."""
    settings = parse_settings(body, "partitions" if "partitions" in body else "partitionsCount")
    settings.setdefault("schema", None)
    branch = body.get("branch") or body.get("branchName") or "master"
    if not isinstance(branch, str):
        raise bad_request("InvalidRequestBody", message="branch must be a string")
    rid = _new_dataset_rid()
    ctx.insert_resource(rid, "stream", body["name"], optional_str(body, "parentFolderRid"))
    stream = create_stream(ctx.storage, rid, branch, **settings)
    return {"rid": rid, **stream.to_json(), "branch": branch}


class _StreamsApi:
    def __init__(self, ctx: FakeContext) -> None:
        self.ctx = ctx

    async def create_dataset(self, request: web.Request) -> web.Response:
        if not self.ctx.auth.authenticate(request).is_admin:
            # Job tokens are scoped to declared resources; creating new ones is outside that scope.
            raise permission_denied("CreateStreamingDatasetPermissionDenied")
        require_preview(request)
        body = await json_object(request)
        name, folder = body.get("name"), body.get("parentFolderRid")
        if not isinstance(name, str) or not name or not isinstance(folder, str) or not folder:
            raise bad_request("InvalidRequestBody", message="name and parentFolderRid are required")
        if body.get("schema") is None:
            raise bad_request("InvalidRequestBody", message="schema is required")
        settings = parse_settings(body)
        branch = optional_str(body, "branchName") or "master"

        with self.ctx.storage.transaction():
            if self.ctx.storage.one(
                "SELECT rid FROM resources WHERE name = ? AND parent_folder_rid = ?", (name, folder)
            ):
                raise conflict("ResourceNameAlreadyExists", parentFolderRid=folder, displayName=name)
            rid = _new_dataset_rid()
            self.ctx.insert_resource(rid, "stream", name, folder)
            create_stream(self.ctx.storage, rid, branch, **settings)
        return web.json_response({"rid": rid, "name": name, "parentFolderRid": folder})

    async def create_stream(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        self.ctx.auth.authenticate(request)  # 401 before any complaint about the body
        body = await json_object(request)
        branch = optional_str(body, "branchName")
        if not branch or body.get("schema") is None:
            raise bad_request("InvalidRequestBody", message="branchName and schema are required")
        authorize(self.ctx, request, rid, branch, "write", "CreateStreamPermissionDenied")
        require_preview(request)
        settings = parse_settings(body)
        if self.ctx.resource_type(rid) != "stream":
            raise not_found("DatasetNotFound", datasetRid=rid)
        with self.ctx.storage.transaction():
            stream = _new_stream(self.ctx, rid, branch, settings)
        return web.json_response(stream.to_json())

    async def get_stream(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        # The SDK lists no permission error here: Foundry answers 404 for streams a token cannot see.
        try:
            authorize(self.ctx, request, rid, branch, "read", "StreamNotFound")
        except ApiError as exc:
            if exc.status != 403:
                raise
            raise not_found("StreamNotFound", datasetRid=rid, streamBranchName=branch) from None
        return web.json_response(load_stream(self.ctx, rid, branch).to_json())

    async def reset(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        authorize(self.ctx, request, rid, branch, "write", "ResetStreamPermissionDenied")
        require_preview(request)
        body = await json_object(request) if request.can_read_body else {}
        settings = parse_settings(body)
        with self.ctx.storage.transaction():
            stream = reset_stream(self.ctx.storage, load_stream(self.ctx, rid, branch), **settings)
        return web.json_response(stream.to_json())

    async def publish_record(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        principal = authorize(self.ctx, request, rid, branch, "write", "PublishRecordToStreamPermissionDenied")
        body = await json_object(request)
        if "record" not in body:
            raise bad_request("InvalidRequestBody", message="record is required")
        stream = load_stream(self.ctx, rid, branch, optional_str(body, "viewRid"))
        publish(self.ctx, principal, stream, [body["record"]], "publishRecord")
        return web.Response(status=204)

    async def publish_records(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        principal = authorize(self.ctx, request, rid, branch, "write", "PublishRecordsToStreamPermissionDenied")
        body = await json_object(request)
        if not isinstance(body.get("records"), list):
            raise bad_request("InvalidRequestBody", message="records must be a list")
        stream = load_stream(self.ctx, rid, branch, optional_str(body, "viewRid"))
        publish(self.ctx, principal, stream, body["records"], "publishRecords")
        return web.Response(status=204)

    async def publish_binary_record(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        denied = "PublishBinaryRecordToStreamPermissionDenied"
        principal = authorize(self.ctx, request, rid, branch, "write", denied)
        data = await request.read()
        stream = load_stream(self.ctx, rid, branch, request.query.get("viewRid"))
        field = binary_field(stream.schema)
        if field is None:
            raise bad_request(
                "RecordDoesNotMatchStreamSchema",
                datasetRid=rid,
                branchName=branch,
                viewRid=stream.view_rid,
                message="publishBinaryRecord needs a stream whose schema is exactly one binary field",
            )
        if len(data) > MAX_RECORD_BYTES:
            raise ApiError(413, "RecordTooLarge", message=f"record is {len(data)} bytes, over {MAX_RECORD_BYTES}")
        publish(self.ctx, principal, stream, [{field: base64.b64encode(data).decode()}], "publishBinaryRecord")
        return web.Response(status=204)

    async def get_records(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        principal = authorize(self.ctx, request, rid, branch, "read", "GetRecordsFromStreamPermissionDenied")
        require_preview(request)
        stream = load_stream(self.ctx, rid, branch, request.query.get("viewRid"))
        partition = parse_partition(stream, request.query.get("partitionId"))
        limit = min(query_int(request, "limit", 100, minimum=1), MAX_GET_RECORDS)
        start = query_int(request, "startOffset", 0)
        records = read_records(self.ctx.storage, stream.view_rid, partition, start, limit)
        record_read(self.ctx, principal, stream, "getRecords", [(partition, o) for o, _ in records])
        return web.json_response([{"offset": o, "value": v} for o, v in records])

    async def get_end_offsets(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        authorize(self.ctx, request, rid, branch, "read", "GetEndOffsetsForStreamPermissionDenied")
        require_preview(request)
        stream = load_stream(self.ctx, rid, branch, request.query.get("viewRid"))
        return web.json_response({str(p): o for p, o in end_offsets(self.ctx.storage, stream).items()})


def setup(app: web.Application, ctx: FakeContext) -> None:
    from . import stream_subscribers

    ctx.storage.ensure_schema(SCHEMA)
    ctx.resource_creators["stream"] = create_from_admin
    api = _StreamsApi(ctx)
    add_routes(
        app,
        [
            ("POST", "/v2/streams/datasets/create", api.create_dataset),
            ("POST", STREAMS, api.create_stream),
            ("GET", STREAMS + "/{branch}", api.get_stream),
            ("POST", STREAMS + "/{branch}/reset", api.reset),
            ("POST", HIGH_SCALE + "/publishRecord", api.publish_record),
            ("POST", HIGH_SCALE + "/publishRecords", api.publish_records),
            ("POST", HIGH_SCALE + "/publishBinaryRecord", api.publish_binary_record),
            ("GET", HIGH_SCALE + "/getRecords", api.get_records),
            ("GET", HIGH_SCALE + "/getEndOffsets", api.get_end_offsets),
        ],
    )
    stream_subscribers.setup(app, ctx)
