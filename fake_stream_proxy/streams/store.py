"""Stream state in SQLite and the Streams API's operations on it: streams, and records by view and partition.

Shared by the v2 handlers, the subscribers (subscribers.py) and the legacy routes (legacy.py), so there is
one copy of every statement. A real stream rejects a whole batch when one record does not match, so
`publish` validates every record before it stores any, and the batch lands with its provenance event.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Literal

from ..auth import Principal
from ..errors import ApiError, bad_request, conflict, not_found
from ..ids import new_rid, now_iso
from ..provenance import Provenance
from ..storage import Storage
from .compiled import BatchCheck, compile_check
from .records import RecordLog
from .schema import RecordError, binary_field, partition_key, validate_record
from .wire import Records, encode_records

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    rid TEXT NOT NULL,
    branch TEXT NOT NULL,
    view_rid TEXT NOT NULL UNIQUE,
    schema TEXT,                    -- JSON stream schema; NULL accepts any JSON object
    partitions INTEGER NOT NULL,
    stream_type TEXT NOT NULL,
    compressed INTEGER NOT NULL,
    next_partition INTEGER NOT NULL DEFAULT 0,  -- round-robin cursor for records without a key
    created_time TEXT NOT NULL,
    PRIMARY KEY (rid, branch)
);
CREATE TABLE IF NOT EXISTS stream_subscribers (
    subscriber_id TEXT PRIMARY KEY, -- unique across streams (the SDK's SubscriberAlreadyExists)
    rid TEXT NOT NULL,
    branch TEXT NOT NULL,
    read_position TEXT NOT NULL,    -- JSON ReadPosition given at creation
    start_offsets TEXT NOT NULL,    -- JSON {"partition": offset} it resolved to
    created_time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stream_subscriber_offsets (
    subscriber_id TEXT NOT NULL REFERENCES stream_subscribers (subscriber_id) ON DELETE CASCADE,
    view_rid TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,   -- the next offset readRecords returns
    PRIMARY KEY (subscriber_id, view_rid, partition)
) WITHOUT ROWID;
"""

STREAM_TYPES = ("LOW_LATENCY", "HIGH_THROUGHPUT")
# Foundry's documented per-record limit on most enrollments.
MAX_RECORD_BYTES = 1024 * 1024
# Offsets are 0-based per partition; `Positions` maps partition -> offset.
Positions = dict[int, int]
Placed = list[tuple[int, int]]  # (partition, offset) per record
Spans = dict[str, list[int]]  # provenance's {partition: [first, last]}
Direction = Literal["read", "write"]


@dataclass(frozen=True)
class Stream:
    rid: str
    branch: str
    view_rid: str
    view_id: int  # the view's small key in stream_chunks (records.py)
    schema: dict[str, Any] | None
    partitions: int
    stream_type: str
    compressed: bool

    def to_json(self) -> dict[str, Any]:
        """The SDK's `Stream` model. A schemaless (admin-created) stream shows an empty field list."""
        return {
            "branchName": self.branch,
            "schema": self.schema if self.schema is not None else {"fields": []},
            "viewRid": self.view_rid,
            "partitionsCount": self.partitions,
            "streamType": self.stream_type,
            "compressed": self.compressed,
        }

    def partition(self, value: Any, what: str = "partitionId") -> int:
        """`value` (a partition id, as a query or JSON string or number) checked against this stream."""
        try:
            partition = int(str(value))
        except ValueError:
            partition = -1
        if not 0 <= partition < self.partitions:
            raise bad_request(
                "Default:InvalidArgument", message=f"{what} {value!r} is not a partition (0..{self.partitions - 1})"
            )
        return partition

    def offsets(self, offsets: Any, what: str) -> Positions:
        """A PartitionOffsets body ({"0": 12}); offsets are Longs, so JSON strings are accepted too."""
        if not isinstance(offsets, dict):
            raise bad_request("InvalidRequestBody", message=f"{what} must be an object of partition id to offset")
        result: Positions = {}
        for key, value in offsets.items():
            partition = self.partition(key, f"{what} partition")
            try:
                offset = int(value) if isinstance(value, int | str) and not isinstance(value, bool) else -1
            except ValueError:
                offset = -1
            if offset < 0:
                raise bad_request("InvalidRequestBody", message=f"{what}[{key!r}] must be a non-negative offset")
            result[partition] = offset
        return result


def _stream(row: Any) -> Stream:
    return Stream(
        rid=row["rid"],
        branch=row["branch"],
        view_rid=row["view_rid"],
        view_id=row["view_id"],
        schema=None if row["schema"] is None else json.loads(row["schema"]),
        partitions=row["partitions"],
        stream_type=row["stream_type"],
        compressed=bool(row["compressed"]),
    )


def dump_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def read_spans(taken: dict[int, Records]) -> Spans:
    """Provenance's spans of what a read returned (each partition's records are in offset order)."""
    return {str(p): [records[0][0], records[-1][0]] for p, records in taken.items() if records}


_FIND = "SELECT s.*, v.view_id FROM streams s JOIN stream_views v ON v.view_rid = s.view_rid WHERE s.rid = ?"


class StreamStore:
    """Callers wrap writes that must land together in `storage.transaction()`; the actions here do."""

    def __init__(self, storage: Storage, provenance: Provenance) -> None:
        self.storage = storage
        self.provenance = provenance
        storage.ensure_schema(SCHEMA)
        self.log = RecordLog(storage)
        self._checks: dict[int, BatchCheck] = {}  # by view id: a view's schema never changes

    # Streams

    def find(self, rid: str, branch: str) -> Stream | None:
        row = self.storage.one(f"{_FIND} AND s.branch = ?", (rid, branch))
        return None if row is None else _stream(row)

    def find_by_view(self, rid: str, view_rid: str) -> Stream | None:
        row = self.storage.one(f"{_FIND} AND s.view_rid = ?", (rid, view_rid))
        return None if row is None else _stream(row)

    def stream(self, rid: str, branch: str, view_rid: str | None = None) -> Stream:
        """The stream on `branch`; 404 StreamNotFound, or 404 ViewNotFound for a view that is not current."""
        stream = self.find(rid, branch)
        if stream is None:
            raise not_found("StreamNotFound", datasetRid=rid, streamBranchName=branch)
        if view_rid is not None and view_rid != stream.view_rid:
            raise not_found("ViewNotFound", viewRid=view_rid)
        return stream

    def _new_view(self) -> tuple[str, int]:
        view_rid = new_rid("foundry-streaming", "view")
        return view_rid, self.log.new_view(view_rid)

    def _insert(self, rid: str, branch: str, settings: dict[str, Any]) -> Stream:
        """`settings`: schema (None accepts any object), partitions, stream_type, compressed."""
        stream = Stream(
            rid,
            branch,
            *self._new_view(),
            settings["schema"],
            settings.get("partitions", 1),
            settings.get("stream_type", "LOW_LATENCY"),
            settings.get("compressed", False),
        )
        self.storage.execute(
            "INSERT INTO streams (rid, branch, view_rid, schema, partitions, stream_type, compressed, created_time)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (rid, branch, stream.view_rid, _dump(stream.schema), stream.partitions, stream.stream_type,
             stream.compressed, now_iso()),
        )  # fmt: skip
        return stream

    def create_resource(self, name: str, folder: str | None, branch: str, settings: dict[str, Any]) -> Stream:
        """A streaming dataset with one stream on `branch`; call inside `storage.transaction()`."""
        rid = new_rid("foundry", "dataset")
        self.storage.insert_resource(rid, "stream", name, folder)
        return self._insert(rid, branch, settings)

    def create_dataset(self, name: str, folder: str, branch: str, settings: dict[str, Any]) -> str:
        with self.storage.transaction():
            if self.storage.one("SELECT rid FROM resources WHERE name = ? AND parent_folder_rid = ?", (name, folder)):
                raise conflict("ResourceNameAlreadyExists", parentFolderRid=folder, displayName=name)
            return self.create_resource(name, folder, branch, settings).rid

    def create_stream(self, rid: str, branch: str, settings: dict[str, Any]) -> Stream:
        if self.storage.resource_type(rid) != "stream":
            raise not_found("DatasetNotFound", datasetRid=rid)
        with self.storage.transaction():
            if self.find(rid, branch) is not None:
                raise conflict("BranchAlreadyExists", datasetRid=rid, branchName=branch)
            return self._insert(rid, branch, settings)

    def reset(self, rid: str, branch: str, settings: dict[str, Any]) -> Stream:
        """A new, empty view replaces the current one; records and positions of the old view go.

        Settings absent from `settings` keep their current value.
        """
        with self.storage.transaction():
            old = self.stream(rid, branch)
            view_rid, view_id = self._new_view()
            new = Stream(**{**old.__dict__, **settings, "view_rid": view_rid, "view_id": view_id})
            self.storage.execute(
                "UPDATE streams SET view_rid = ?, schema = ?, partitions = ?, stream_type = ?, compressed = ?,"
                " next_partition = 0 WHERE rid = ? AND branch = ?",
                (new.view_rid, _dump(new.schema), new.partitions, new.stream_type, new.compressed, rid, branch),
            )
            self.log.drop_view(old.view_id)
            self.storage.execute("DELETE FROM stream_subscriber_offsets WHERE view_rid = ?", (old.view_rid,))
        self._checks.pop(old.view_id, None)
        return new

    # Publishing

    def publish(
        self, principal: Principal, stream: Stream, records: list[Any], operation: str, *, strict: bool = False
    ) -> Placed:
        """Validate every record first, then store the batch and its provenance event in one transaction.

        `strict`: the records came from a strict parse (wire.parse_json), so orjson encodes them exactly.
        """
        check = self._checks.get(stream.view_id)
        if check is None:
            check = self._checks[stream.view_id] = compile_check(stream.schema)
        if check(records):
            values, encoded = records, encode_records(records, strict)
            if encoded and max(map(len, encoded)) > MAX_RECORD_BYTES:
                index = next(i for i, e in enumerate(encoded) if len(e) > MAX_RECORD_BYTES)
                raise _too_large(_path(records, index), len(encoded[index]))
        else:
            values, encoded = self._validate(stream, records, strict)
        if not encoded:
            return []
        with self.storage.transaction():
            placed, spans = self._append(stream, values, encoded)
            self._record(principal, stream, operation, "write", len(placed), spans)
        return placed

    def _validate(self, stream: Stream, records: list[Any], strict: bool) -> tuple[list[Any], list[bytes]]:
        """Record by record, as a real stream reports them: the first bad or oversized record fails the batch."""
        values: list[Any] = []
        encoded: list[bytes] = []
        for index, record in enumerate(records):
            try:
                value = validate_record(stream.schema, record, _path(records, index))
            except RecordError as exc:
                raise _mismatch(stream, str(exc)) from None
            [data] = encode_records([value], strict)
            if len(data) > MAX_RECORD_BYTES:
                raise _too_large(_path(records, index), len(data))
            values.append(value)
            encoded.append(data)
        return values, encoded

    def publish_binary(self, principal: Principal, stream: Stream, data: bytes) -> None:
        """The bytes as the one binary field's (base64) value."""
        field = binary_field(stream.schema)
        if field is None:
            raise _mismatch(stream, "publishBinaryRecord needs a stream whose schema is exactly one binary field")
        if len(data) > MAX_RECORD_BYTES:
            raise _too_large("record", len(data))
        record = {field: base64.b64encode(data).decode()}
        self.publish(principal, stream, [record], "publishBinaryRecord", strict=True)

    def _assign_partitions(self, stream: Stream, records: list[Any]) -> list[int] | int:
        """Keyed records hash to a fixed partition; the rest go round robin from a persisted cursor.

        An int: every record goes to that partition (always so with one partition, whose cursor stays 0).
        """
        keyed = bool((stream.schema or {}).get("keyFieldNames"))
        if stream.partitions == 1 and not keyed:
            return 0
        row = self.storage.one("SELECT next_partition FROM streams WHERE view_rid = ?", (stream.view_rid,))
        cursor = int(row["next_partition"]) if row is not None else 0
        result: list[int] = []
        for record in records:
            key = partition_key(stream.schema, record) if keyed else None
            if key is not None:
                result.append(zlib.crc32(key.encode()) % stream.partitions)
            else:
                result.append(cursor % stream.partitions)
                cursor += 1
        self.storage.execute(
            "UPDATE streams SET next_partition = ? WHERE view_rid = ?", (cursor % stream.partitions, stream.view_rid)
        )
        return result

    def _append(self, stream: Stream, values: list[Any], encoded: list[bytes]) -> tuple[Placed, Spans]:
        """Append validated records; returns (partition, offset) per record, in input order, and the spans."""
        partitions = self._assign_partitions(stream, values)
        if isinstance(partitions, int):
            start = self.log.end_offset(stream.view_id, partitions)
            self.log.append(stream.view_id, partitions, start, encoded)
            placed = list(zip(repeat(partitions), range(start, start + len(encoded))))
            return placed, {str(partitions): [start, start + len(encoded) - 1]}
        grouped: dict[int, list[bytes]] = {}
        starts: dict[int, int] = {}
        placed = []
        for data, partition in zip(encoded, partitions, strict=True):
            if partition not in grouped:
                grouped[partition], starts[partition] = [], self.log.end_offset(stream.view_id, partition)
            placed.append((partition, starts[partition] + len(grouped[partition])))
            grouped[partition].append(data)
        for partition, group in grouped.items():
            self.log.append(stream.view_id, partition, starts[partition], group)
        return placed, {str(p): [starts[p], starts[p] + len(g) - 1] for p, g in grouped.items()}

    # Reading

    def records(self, stream: Stream, partition: int, start: int, limit: int) -> Records:
        """(offset, stored JSON) from `start` on, oldest first."""
        return self.log.read(stream.view_id, partition, start, limit)

    def latest(self, stream: Stream, partition: int, limit: int) -> Records:
        """The last `limit` (offset, stored JSON) of a partition, oldest first."""
        end = self.log.end_offset(stream.view_id, partition)
        return self.log.read(stream.view_id, partition, max(0, end - limit), limit)

    def end_offsets(self, stream: Stream) -> Positions:
        """The next offset each partition will write: what getEndOffsets returns and `latest` starts at."""
        return {p: self.log.end_offset(stream.view_id, p) for p in range(stream.partitions)}

    def record_read(
        self, principal: Principal, stream: Stream, operation: str, taken: dict[int, Records], **extra: Any
    ) -> None:
        """A provenance event for a read that returned records (empty polls are not recorded)."""
        count = sum(map(len, taken.values()))
        if count:
            self._record(principal, stream, operation, "read", count, read_spans(taken), **extra)

    def _record(
        self, principal: Principal, stream: Stream, operation: str, direction: Direction, count: int, spans: Spans,
        **extra: Any,
    ) -> None:  # fmt: skip
        self.provenance.record(
            principal,
            rid=stream.rid,
            branch=stream.branch,
            operation=operation,
            direction=direction,
            record_count=count,
            offsets=spans,
            viewRid=stream.view_rid,
            **extra,
        )


def _path(records: list[Any], index: int) -> str:
    return "record" if len(records) == 1 else f"records[{index}]"


def _too_large(path: str, size: int) -> ApiError:
    return ApiError(413, "RecordTooLarge", message=f"{path} is {size} bytes, over {MAX_RECORD_BYTES}")


def _mismatch(stream: Stream, message: str) -> ApiError:
    return bad_request(
        "RecordDoesNotMatchStreamSchema",
        datasetRid=stream.rid,
        branchName=stream.branch,
        viewRid=stream.view_rid,
        message=message,
    )


def _dump(value: Any) -> str | None:
    return None if value is None else dump_json(value)
