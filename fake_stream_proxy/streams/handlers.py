"""Streams API v2 handlers: streaming datasets, streams, records, subscribers.

Where Palantir's API docs and the official SDK differ, the SDK wins: error names and their parameters are the
ones the SDK deserialises into typed exceptions, and every endpoint whose SDK method takes `preview`
answers 400 ApiFeaturePreviewUsageOnly without `preview=true`, as Foundry does for beta endpoints
(the API docs list preview for fewer). Also from the SDK: get answers 404 StreamNotFound (not 403) for
a stream the caller may not see; getRecords caps `limit` at a server limit; permission errors carry
datasetRid/streamBranchName.

Subscriber calls need only read access to the stream: a subscriber is the consumer's state, and connectors
subscribe to their inputs. (The SDK documents api:streams-write for some; a job token has no such scopes.)
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..auth import Access, Auth, Principal
from ..context import FakeContext
from ..errors import bad_request, permission_denied
from ..params import json_object, optional_str, query_int, require_preview
from .schema import SchemaError, check_schema
from .store import STREAM_TYPES, StreamStore
from .subscribers import SubscriberStore, positions_json
from .wire import by_partition, json_body, json_response, offset_values

# getRecords is a "server-defined limit" in the SDK; a small one makes clients page like they must on Foundry.
MAX_GET_RECORDS = 1000
MAX_PARTITIONS = 64
DEFAULT_READ_LIMIT = 100
MAX_SUBSCRIBER_ID_LENGTH = 256


def authorize_stream(
    auth: Auth, request: web.Request, rid: str, branch: str, access: Access, denied: str, **params: Any
) -> Principal:
    """Auth's check, failing with the parameters the SDK's typed `...PermissionDenied` errors require."""
    return auth.authorize(
        request, rid, access, branch=branch, denied=denied, datasetRid=rid, streamBranchName=branch, **params
    )


def path_stream(request: web.Request) -> tuple[str, str]:
    return request.match_info["rid"], request.match_info["branch"]


def parse_settings(body: dict[str, Any], partitions_key: str = "partitionsCount") -> dict[str, Any]:
    """Only the settings present in `body`, checked; reset keeps the current value of absent ones."""
    settings: dict[str, Any] = {}
    if body.get("schema") is not None:
        try:
            settings["schema"] = check_schema(body["schema"])
        except SchemaError as exc:
            if exc.field is not None:
                raise bad_request("InvalidFieldSchema", fieldName=exc.field, message=exc.message) from None
            raise bad_request("InvalidSchema", errorType="INVALID_SCHEMA", message=exc.message) from None
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


class StreamHandlers:
    def __init__(self, ctx: FakeContext, store: StreamStore) -> None:
        self.auth = ctx.auth
        self.store = store

    def create_for_admin(self, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /_fake/resources {"type": "stream", ...}`; no schema means any JSON object is accepted."""
        settings = parse_settings(body, "partitions" if "partitions" in body else "partitionsCount")
        settings.setdefault("schema", None)
        branch = body.get("branch") or body.get("branchName") or "master"
        if not isinstance(branch, str):
            raise bad_request("InvalidRequestBody", message="branch must be a string")
        stream = self.store.create_resource(body["name"], optional_str(body, "parentFolderRid"), branch, settings)
        return {"rid": stream.rid, **stream.to_json(), "branch": branch}

    async def create_dataset(self, request: web.Request) -> web.Response:
        if not self.auth.authenticate(request).is_admin:
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
        rid = self.store.create_dataset(name, folder, optional_str(body, "branchName") or "master", settings)
        return web.json_response({"rid": rid, "name": name, "parentFolderRid": folder})

    async def create_stream(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        self.auth.authenticate(request)  # 401 before any complaint about the body
        body = await json_object(request)
        branch = optional_str(body, "branchName")
        if not branch or body.get("schema") is None:
            raise bad_request("InvalidRequestBody", message="branchName and schema are required")
        authorize_stream(self.auth, request, rid, branch, "write", "CreateStreamPermissionDenied")
        require_preview(request)
        return web.json_response(self.store.create_stream(rid, branch, parse_settings(body)).to_json())

    async def get_stream(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        # The SDK lists no permission error here: Foundry answers 404 for streams a token cannot see.
        self.auth.authorize(
            request, rid, "read", branch=branch, denied="StreamNotFound", status=404,
            datasetRid=rid, streamBranchName=branch,
        )  # fmt: skip
        return web.json_response(self.store.stream(rid, branch).to_json())

    async def reset(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        authorize_stream(self.auth, request, rid, branch, "write", "ResetStreamPermissionDenied")
        require_preview(request)
        settings = parse_settings(await json_object(request, optional=True))
        return web.json_response(self.store.reset(rid, branch, settings).to_json())

    async def publish_record(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        principal = authorize_stream(self.auth, request, rid, branch, "write", "PublishRecordToStreamPermissionDenied")
        body, strict = await json_body(request)
        if "record" not in body:
            raise bad_request("InvalidRequestBody", message="record is required")
        stream = self.store.stream(rid, branch, optional_str(body, "viewRid"))
        self.store.publish(principal, stream, [body["record"]], "publishRecord", strict=strict)
        return web.Response(status=204)

    async def publish_records(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        denied = "PublishRecordsToStreamPermissionDenied"
        principal = authorize_stream(self.auth, request, rid, branch, "write", denied)
        body, strict = await json_body(request)
        if not isinstance(body.get("records"), list):
            raise bad_request("InvalidRequestBody", message="records must be a list")
        stream = self.store.stream(rid, branch, optional_str(body, "viewRid"))
        self.store.publish(principal, stream, body["records"], "publishRecords", strict=strict)
        return web.Response(status=204)

    async def publish_binary_record(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        denied = "PublishBinaryRecordToStreamPermissionDenied"
        principal = authorize_stream(self.auth, request, rid, branch, "write", denied)
        data = await request.read()
        stream = self.store.stream(rid, branch, request.query.get("viewRid"))
        self.store.publish_binary(principal, stream, data)
        return web.Response(status=204)

    async def get_records(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        principal = authorize_stream(self.auth, request, rid, branch, "read", "GetRecordsFromStreamPermissionDenied")
        require_preview(request)
        stream = self.store.stream(rid, branch, request.query.get("viewRid"))
        partition = stream.partition(request.query.get("partitionId"))
        limit = min(query_int(request, "limit", 100, minimum=1), MAX_GET_RECORDS)
        records = self.store.records(stream, partition, query_int(request, "startOffset", 0), limit)
        self.store.record_read(principal, stream, "getRecords", {partition: records})
        return json_response(offset_values(records))

    async def get_end_offsets(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        authorize_stream(self.auth, request, rid, branch, "read", "GetEndOffsetsForStreamPermissionDenied")
        require_preview(request)
        stream = self.store.stream(rid, branch, request.query.get("viewRid"))
        return web.json_response({str(p): o for p, o in self.store.end_offsets(stream).items()})


class SubscriberHandlers:
    def __init__(self, ctx: FakeContext, streams: StreamStore, subscribers: SubscriberStore) -> None:
        self.auth = ctx.auth
        self.streams = streams
        self.store = subscribers

    def _authorize(self, request: web.Request, denied: str, subscriber_id: str) -> Principal:
        rid, branch = path_stream(request)
        principal = authorize_stream(
            self.auth, request, rid, branch, "read", denied, subscriberSubscriberId=subscriber_id
        )
        require_preview(request)
        return principal

    async def create(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        self.auth.authenticate(request)  # 401 before any complaint about the body
        body = await json_object(request)
        subscriber_id = body.get("subscriberId")
        if not isinstance(subscriber_id, str) or not 0 < len(subscriber_id) <= MAX_SUBSCRIBER_ID_LENGTH:
            raise bad_request("InvalidRequestBody", message="subscriberId must be a string of 1 to 256 characters")
        principal = self._authorize(request, "CreateSubscriberPermissionDenied", subscriber_id)
        stream = self.streams.stream(rid, branch)
        subscriber = self.store.create(principal, stream, subscriber_id, body.get("readPosition"))
        return web.json_response(subscriber.to_json(stream.view_rid))

    async def delete(self, request: web.Request) -> web.Response:
        subscriber_id = request.match_info["subscriberId"]
        principal = self._authorize(request, "DeleteSubscriberPermissionDenied", subscriber_id)
        self.store.delete(principal, self.streams.stream(*path_stream(request)), subscriber_id)
        return web.Response(status=204)

    async def read_records(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        subscriber_id = request.match_info["subscriberId"]
        principal = self._authorize(request, "ReadRecordsFromSubscriberPermissionDenied", subscriber_id)
        body = await json_object(request, optional=True)
        stream = self.streams.stream(rid, branch, optional_str(body, "viewRid"))
        self.store.subscriber(stream, subscriber_id)  # 404 before any complaint about the body
        limit = body.get("limit")
        if limit is None:
            limit = DEFAULT_READ_LIMIT
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise bad_request("InvalidRequestBody", message="limit must be a positive integer")
        partition_ids = body.get("partitionIds")
        if partition_ids is not None and not isinstance(partition_ids, list):
            raise bad_request("InvalidRequestBody", message="partitionIds must be a list")
        selected = None if partition_ids is None else sorted({stream.partition(p) for p in partition_ids})
        taken = self.store.read(principal, stream, subscriber_id, limit, selected, body.get("autoCommit") is True)
        return json_response(by_partition(taken))

    async def commit_offsets(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        subscriber_id = request.match_info["subscriberId"]
        principal = self._authorize(request, "CommitSubscriberOffsetsPermissionDenied", subscriber_id)
        body = await json_object(request)
        stream = self.streams.stream(rid, branch, optional_str(body, "viewRid"))
        committed = self.store.commit(principal, stream, subscriber_id, body.get("offsets"))
        return web.json_response(positions_json(committed))

    async def get_read_position(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        subscriber_id = request.match_info["subscriberId"]
        self._authorize(request, "GetSubscriberReadPositionPermissionDenied", subscriber_id)
        stream = self.streams.stream(rid, branch, request.query.get("viewRid"))
        return web.json_response(positions_json(self.store.positions(stream, subscriber_id)))

    async def reset_offsets(self, request: web.Request) -> web.Response:
        rid, branch = path_stream(request)
        subscriber_id = request.match_info["subscriberId"]
        principal = self._authorize(request, "ResetSubscriberOffsetsPermissionDenied", subscriber_id)
        body = await json_object(request)
        stream = self.streams.stream(rid, branch)
        moved = self.store.reset(principal, stream, subscriber_id, body.get("position"))
        return web.json_response(positions_json(moved))
