"""Stream state in SQLite: streams, their records by view and partition, and subscribers' positions.

Shared by the v2 API (streams.py, stream_subscribers.py) and the legacy routes (legacy.py), so there is
one copy of every statement. Callers wrap writes that must land together in `storage.transaction()`.
"""

from __future__ import annotations

import json
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

from .auth import now_iso
from .errors import bad_request
from .storage import Storage
from .stream_schema import partition_key

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
# Offsets are 0-based per partition; `Positions` maps partition -> offset.
Positions = dict[int, int]


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


@dataclass(frozen=True)
class Subscriber:
    subscriber_id: str
    rid: str
    branch: str
    read_position: dict[str, Any]
    start_offsets: dict[str, int]
    created_time: str

    def to_json(self, view_rid: str) -> dict[str, Any]:
        """The SDK's `Subscriber` model."""
        return {
            "subscriberId": self.subscriber_id,
            "readPosition": self.read_position,
            "datasetRid": self.rid,
            "branchName": self.branch,
            "viewRid": view_rid,
            "startOffsets": self.start_offsets,
            "createdTime": self.created_time,
        }


def new_view_rid() -> str:
    return f"ri.foundry-streaming.main.view.{uuid.uuid4()}"


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


def create_stream(
    storage: Storage,
    rid: str,
    branch: str,
    schema: dict[str, Any] | None,
    partitions: int = 1,
    stream_type: str = "LOW_LATENCY",
    compressed: bool = False,
) -> Stream:
    stream = Stream(rid, branch, new_view_rid(), schema, partitions, stream_type, compressed)
    storage.execute(
        "INSERT INTO streams (rid, branch, view_rid, schema, partitions, stream_type, compressed, created_time)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (rid, branch, stream.view_rid, _dump(schema), partitions, stream_type, compressed, now_iso()),
    )
    return stream


def get_stream(storage: Storage, rid: str, branch: str) -> Stream | None:
    row = storage.one("SELECT * FROM streams WHERE rid = ? AND branch = ?", (rid, branch))
    return None if row is None else _stream(row)


def get_stream_by_view(storage: Storage, rid: str, view_rid: str) -> Stream | None:
    row = storage.one("SELECT * FROM streams WHERE rid = ? AND view_rid = ?", (rid, view_rid))
    return None if row is None else _stream(row)


def reset_stream(storage: Storage, old: Stream, **changes: Any) -> Stream:
    """A new, empty view replaces the current one; records and positions of the old view go."""
    new = Stream(**{**old.__dict__, **changes, "view_rid": new_view_rid()})
    storage.execute(
        "UPDATE streams SET view_rid = ?, schema = ?, partitions = ?, stream_type = ?, compressed = ?,"
        " next_partition = 0 WHERE rid = ? AND branch = ?",
        (new.view_rid, _dump(new.schema), new.partitions, new.stream_type, new.compressed, old.rid, old.branch),
    )
    storage.execute("DELETE FROM stream_records WHERE view_rid = ?", (old.view_rid,))
    storage.execute("DELETE FROM stream_subscriber_offsets WHERE view_rid = ?", (old.view_rid,))
    return new


# Records.


def assign_partitions(storage: Storage, stream: Stream, records: list[dict[str, Any]]) -> list[int]:
    """Keyed records hash to a fixed partition; the rest go round robin from a persisted cursor."""
    row = storage.one("SELECT next_partition FROM streams WHERE view_rid = ?", (stream.view_rid,))
    cursor = int(row["next_partition"]) if row is not None else 0
    result: list[int] = []
    for record in records:
        key = partition_key(stream.schema, record)
        if key is not None:
            result.append(zlib.crc32(key.encode()) % stream.partitions)
        else:
            result.append(cursor % stream.partitions)
            cursor += 1
    storage.execute(
        "UPDATE streams SET next_partition = ? WHERE view_rid = ?", (cursor % stream.partitions, stream.view_rid)
    )
    return result


def append_records(
    storage: Storage, stream: Stream, records: list[dict[str, Any]], partitions: list[int] | None = None
) -> list[tuple[int, int]]:
    """Append validated records; returns (partition, offset) per record, in input order."""
    if partitions is None:
        partitions = assign_partitions(storage, stream, records)
    next_offsets = end_offsets(storage, stream)
    rows: list[tuple[str, int, int, str]] = []
    placed: list[tuple[int, int]] = []
    for record, partition in zip(records, partitions, strict=True):
        offset = next_offsets[partition]
        next_offsets[partition] = offset + 1
        rows.append((stream.view_rid, partition, offset, json.dumps(record, separators=(",", ":"))))
        placed.append((partition, offset))
    storage.executemany(
        "INSERT INTO stream_records (view_rid, partition, record_offset, value) VALUES (?, ?, ?, ?)", rows
    )
    return placed


def read_records(storage: Storage, view_rid: str, partition: int, start: int, limit: int) -> list[tuple[int, Any]]:
    rows = storage.query(
        "SELECT record_offset, value FROM stream_records WHERE view_rid = ? AND partition = ? AND record_offset >= ?"
        " ORDER BY record_offset LIMIT ?",
        (view_rid, partition, start, limit),
    )
    return [(int(r["record_offset"]), json.loads(r["value"])) for r in rows]


def latest_records(storage: Storage, view_rid: str, partition: int, limit: int) -> list[tuple[int, Any]]:
    rows = storage.query(
        "SELECT record_offset, value FROM stream_records WHERE view_rid = ? AND partition = ?"
        " ORDER BY record_offset DESC LIMIT ?",
        (view_rid, partition, limit),
    )
    return [(int(r["record_offset"]), json.loads(r["value"])) for r in reversed(rows)]


def end_offsets(storage: Storage, stream: Stream) -> Positions:
    """The next offset each partition will write: what getEndOffsets returns and `latest` starts at."""
    # One MAX per partition: SQLite answers it from the primary key in O(log n), whereas a single
    # `GROUP BY partition` query scans the whole view (88 ms instead of 0.006 ms at 300k records).
    result = dict.fromkeys(range(stream.partitions), 0)
    for partition in result:
        row = storage.one(
            "SELECT MAX(record_offset) AS last FROM stream_records WHERE view_rid = ? AND partition = ?",
            (stream.view_rid, partition),
        )
        if row is not None and row["last"] is not None:
            result[partition] = int(row["last"]) + 1
    return result


# Subscribers.


def get_subscriber(storage: Storage, subscriber_id: str) -> Subscriber | None:
    row = storage.one("SELECT * FROM stream_subscribers WHERE subscriber_id = ?", (subscriber_id,))
    if row is None:
        return None
    return Subscriber(
        subscriber_id=row["subscriber_id"],
        rid=row["rid"],
        branch=row["branch"],
        read_position=json.loads(row["read_position"]),
        start_offsets=json.loads(row["start_offsets"]),
        created_time=row["created_time"],
    )


def create_subscriber(
    storage: Storage, stream: Stream, subscriber_id: str, read_position: dict[str, Any]
) -> Subscriber:
    start = resolve_position(storage, stream, read_position)
    subscriber = Subscriber(
        subscriber_id, stream.rid, stream.branch, read_position, {str(p): o for p, o in start.items()}, now_iso()
    )
    storage.execute(
        "INSERT INTO stream_subscribers (subscriber_id, rid, branch, read_position, start_offsets, created_time)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            subscriber_id,
            stream.rid,
            stream.branch,
            _dump(read_position),
            _dump(subscriber.start_offsets),
            subscriber.created_time,
        ),
    )
    set_positions(storage, subscriber_id, stream.view_rid, start)
    return subscriber


def delete_subscriber(storage: Storage, subscriber_id: str) -> None:
    storage.execute("DELETE FROM stream_subscriber_offsets WHERE subscriber_id = ?", (subscriber_id,))
    storage.execute("DELETE FROM stream_subscribers WHERE subscriber_id = ?", (subscriber_id,))


def positions(storage: Storage, subscriber_id: str, stream: Stream) -> Positions:
    """Where the next read starts; partitions never positioned in this view start at 0 (a reset view)."""
    rows = storage.query(
        "SELECT partition, next_offset FROM stream_subscriber_offsets WHERE subscriber_id = ? AND view_rid = ?",
        (subscriber_id, stream.view_rid),
    )
    result = dict.fromkeys(range(stream.partitions), 0)
    result.update({int(r["partition"]): int(r["next_offset"]) for r in rows if r["partition"] < stream.partitions})
    return result


def set_positions(storage: Storage, subscriber_id: str, view_rid: str, new: Positions) -> None:
    storage.executemany(
        "INSERT INTO stream_subscriber_offsets (subscriber_id, view_rid, partition, next_offset) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (subscriber_id, view_rid, partition) DO UPDATE SET next_offset = excluded.next_offset",
        [(subscriber_id, view_rid, p, o) for p, o in new.items()],
    )


def resolve_position(storage: Storage, stream: Stream, position: Any) -> Positions:
    """A ReadPosition (earliest | latest | specific) as offsets for every partition; 400 if malformed."""
    kind = position.get("type") if isinstance(position, dict) else None
    if kind == "earliest":
        return dict.fromkeys(range(stream.partitions), 0)
    if kind == "latest":
        return end_offsets(storage, stream)
    if kind == "specific":
        ends = end_offsets(storage, stream)
        result = dict.fromkeys(range(stream.partitions), 0)
        result.update(parse_offsets(stream, position.get("offsets"), "offsets"))
        for partition, offset in result.items():
            if offset > ends[partition]:
                raise bad_request(
                    "Default:InvalidArgument",
                    message=f"offset {offset} is beyond the end ({ends[partition]}) of partition {partition}",
                )
        return result
    raise bad_request(
        "InvalidRequestBody", message='a read position is {"type": "earliest" | "latest" | "specific", "offsets"?}'
    )


def parse_partition(stream: Stream, value: Any, what: str = "partitionId") -> int:
    try:
        partition = int(str(value))
    except ValueError:
        partition = -1
    if not 0 <= partition < stream.partitions:
        raise bad_request(
            "Default:InvalidArgument", message=f"{what} {value!r} is not a partition (0..{stream.partitions - 1})"
        )
    return partition


def parse_offsets(stream: Stream, offsets: Any, what: str) -> Positions:
    """A PartitionOffsets body ({"0": 12}); offsets are Longs, so JSON strings are accepted too."""
    if not isinstance(offsets, dict):
        raise bad_request("InvalidRequestBody", message=f"{what} must be an object of partition id to offset")
    result: Positions = {}
    for key, value in offsets.items():
        partition = parse_partition(stream, key, f"{what} partition")
        try:
            offset = int(value) if isinstance(value, int | str) and not isinstance(value, bool) else -1
        except ValueError:
            offset = -1
        if offset < 0:
            raise bad_request("InvalidRequestBody", message=f"{what}[{key!r}] must be a non-negative offset")
        result[partition] = offset
    return result


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))
