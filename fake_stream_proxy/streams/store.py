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
from typing import Any, Literal

from ..auth import Principal
from ..errors import ApiError, bad_request, conflict, not_found
from ..ids import new_rid, now_iso
from ..provenance import Provenance
from ..storage import Storage
from .schema import RecordError, binary_field, partition_key, validate_record

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
CREATE TABLE IF NOT EXISTS stream_records (
    view_rid TEXT NOT NULL,
    partition INTEGER NOT NULL,
    record_offset INTEGER NOT NULL,
    value TEXT NOT NULL,            -- JSON; binary fields are base64 strings
    PRIMARY KEY (view_rid, partition, record_offset)
) WITHOUT ROWID;
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
Direction = Literal["read", "write"]


@dataclass(frozen=True)
class Stream:
    rid: str
    branch: str
    view_rid: str
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
        schema=None if row["schema"] is None else json.loads(row["schema"]),
        partitions=row["partitions"],
        stream_type=row["stream_type"],
        compressed=bool(row["compressed"]),
    )


def dump_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def offset_spans(placed: Placed) -> dict[str, list[int]]:
    """{partition: [first, last]} for provenance."""
    spans: dict[str, list[int]] = {}
    for partition, offset in placed:
        span = spans.setdefault(str(partition), [offset, offset])
        span[0], span[1] = min(span[0], offset), max(span[1], offset)
    return spans


class StreamStore:
    """Callers wrap writes that must land together in `storage.transaction()`; the actions here do."""

    def __init__(self, storage: Storage, provenance: Provenance) -> None:
        self.storage = storage
        self.provenance = provenance
        storage.ensure_schema(SCHEMA)

    # Streams

    def find(self, rid: str, branch: str) -> Stream | None:
        row = self.storage.one("SELECT * FROM streams WHERE rid = ? AND branch = ?", (rid, branch))
        return None if row is None else _stream(row)

    def find_by_view(self, rid: str, view_rid: str) -> Stream | None:
        row = self.storage.one("SELECT * FROM streams WHERE rid = ? AND view_rid = ?", (rid, view_rid))
        return None if row is None else _stream(row)

    def stream(self, rid: str, branch: str, view_rid: str | None = None) -> Stream:
        """The stream on `branch`; 404 StreamNotFound, or 404 ViewNotFound for a view that is not current."""
        stream = self.find(rid, branch)
        if stream is None:
            raise not_found("StreamNotFound", datasetRid=rid, streamBranchName=branch)
        if view_rid is not None and view_rid != stream.view_rid:
            raise not_found("ViewNotFound", viewRid=view_rid)
        return stream

    def _insert(self, rid: str, branch: str, settings: dict[str, Any]) -> Stream:
        """`settings`: schema (None accepts any object), partitions, stream_type, compressed."""
        stream = Stream(
            rid,
            branch,
            new_rid("foundry-streaming", "view"),
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
            new = Stream(**{**old.__dict__, **settings, "view_rid": new_rid("foundry-streaming", "view")})
            self.storage.execute(
                "UPDATE streams SET view_rid = ?, schema = ?, partitions = ?, stream_type = ?, compressed = ?,"
                " next_partition = 0 WHERE rid = ? AND branch = ?",
                (new.view_rid, _dump(new.schema), new.partitions, new.stream_type, new.compressed, rid, branch),
            )
            self.storage.execute("DELETE FROM stream_records WHERE view_rid = ?", (old.view_rid,))
            self.storage.execute("DELETE FROM stream_subscriber_offsets WHERE view_rid = ?", (old.view_rid,))
        return new

    # Publishing

    def publish(self, principal: Principal, stream: Stream, records: list[Any], operation: str) -> Placed:
        """Validate every record first, then store the batch and its provenance event in one transaction."""
        validated: list[dict[str, Any]] = []
        for index, record in enumerate(records):
            path = "record" if len(records) == 1 else f"records[{index}]"
            try:
                value = validate_record(stream.schema, record, path)
            except RecordError as exc:
                raise _mismatch(stream, str(exc)) from None
            size = len(dump_json(value).encode())
            if size > MAX_RECORD_BYTES:
                raise ApiError(413, "RecordTooLarge", message=f"{path} is {size} bytes, over {MAX_RECORD_BYTES}")
            validated.append(value)
        if not validated:
            return []
        with self.storage.transaction():
            placed = self._append(stream, validated)
            self._record(principal, stream, operation, "write", placed)
        return placed

    def publish_binary(self, principal: Principal, stream: Stream, data: bytes) -> None:
        """The bytes as the one binary field's (base64) value."""
        field = binary_field(stream.schema)
        if field is None:
            raise _mismatch(stream, "publishBinaryRecord needs a stream whose schema is exactly one binary field")
        if len(data) > MAX_RECORD_BYTES:
            raise ApiError(413, "RecordTooLarge", message=f"record is {len(data)} bytes, over {MAX_RECORD_BYTES}")
        self.publish(principal, stream, [{field: base64.b64encode(data).decode()}], "publishBinaryRecord")

    def _assign_partitions(self, stream: Stream, records: list[dict[str, Any]]) -> list[int]:
        """Keyed records hash to a fixed partition; the rest go round robin from a persisted cursor."""
        row = self.storage.one("SELECT next_partition FROM streams WHERE view_rid = ?", (stream.view_rid,))
        cursor = int(row["next_partition"]) if row is not None else 0
        result: list[int] = []
        for record in records:
            key = partition_key(stream.schema, record)
            if key is not None:
                result.append(zlib.crc32(key.encode()) % stream.partitions)
            else:
                result.append(cursor % stream.partitions)
                cursor += 1
        self.storage.execute(
            "UPDATE streams SET next_partition = ? WHERE view_rid = ?", (cursor % stream.partitions, stream.view_rid)
        )
        return result

    def _append(self, stream: Stream, records: list[dict[str, Any]]) -> Placed:
        """Append validated records; returns (partition, offset) per record, in input order."""
        partitions = self._assign_partitions(stream, records)
        next_offsets = self.end_offsets(stream)
        rows: list[tuple[str, int, int, str]] = []
        placed: Placed = []
        for record, partition in zip(records, partitions, strict=True):
            offset = next_offsets[partition]
            next_offsets[partition] = offset + 1
            rows.append((stream.view_rid, partition, offset, dump_json(record)))
            placed.append((partition, offset))
        self.storage.executemany(
            "INSERT INTO stream_records (view_rid, partition, record_offset, value) VALUES (?, ?, ?, ?)", rows
        )
        return placed

    # Reading

    def records(self, stream: Stream, partition: int, start: int, limit: int) -> list[tuple[int, Any]]:
        """(offset, value) from `start` on, oldest first."""
        rows = self.storage.query(
            "SELECT record_offset, value FROM stream_records WHERE view_rid = ? AND partition = ?"
            " AND record_offset >= ? ORDER BY record_offset LIMIT ?",
            (stream.view_rid, partition, start, limit),
        )
        return [(int(r["record_offset"]), json.loads(r["value"])) for r in rows]

    def latest(self, stream: Stream, partition: int, limit: int) -> list[tuple[int, Any]]:
        """The last `limit` (offset, value) of a partition, oldest first."""
        rows = self.storage.query(
            "SELECT record_offset, value FROM stream_records WHERE view_rid = ? AND partition = ?"
            " ORDER BY record_offset DESC LIMIT ?",
            (stream.view_rid, partition, limit),
        )
        return [(int(r["record_offset"]), json.loads(r["value"])) for r in reversed(rows)]

    def end_offsets(self, stream: Stream) -> Positions:
        """The next offset each partition will write: what getEndOffsets returns and `latest` starts at."""
        # One MAX per partition: SQLite answers it from the primary key in O(log n), whereas a single
        # `GROUP BY partition` query scans the whole view (88 ms instead of 0.006 ms at 300k records).
        result = dict.fromkeys(range(stream.partitions), 0)
        for partition in result:
            row = self.storage.one(
                "SELECT MAX(record_offset) AS last FROM stream_records WHERE view_rid = ? AND partition = ?",
                (stream.view_rid, partition),
            )
            if row is not None and row["last"] is not None:
                result[partition] = int(row["last"]) + 1
        return result

    def record_read(self, principal: Principal, stream: Stream, operation: str, placed: Placed, **extra: Any) -> None:
        """A provenance event for a read that returned records (empty polls are not recorded)."""
        if placed:
            self._record(principal, stream, operation, "read", placed, **extra)

    def _record(
        self, principal: Principal, stream: Stream, operation: str, direction: Direction, placed: Placed, **extra: Any
    ) -> None:
        self.provenance.record(
            principal,
            rid=stream.rid,
            branch=stream.branch,
            operation=operation,
            direction=direction,
            record_count=len(placed),
            offsets=offset_spans(placed),
            viewRid=stream.view_rid,
            **extra,
        )


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
