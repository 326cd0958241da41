"""Stream subscribers: server-side read positions, which give connectors at-least-once reads.

readRecords starts at the committed position and, without autoCommit, does not move it: a connector that
dies before commitOffsets reads the same records again. Re-creating an existing subscriber returns it with
its positions intact, so a restarted connector resumes where it committed.

A subscriber belongs to the job that created it: another job may read it but not move, reset or delete it
(403, the action's `...PermissionDenied`); the admin may do anything. Subscribers the admin created, or that
predate owners, have none and any job with read access may use them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..auth import Principal
from ..errors import bad_request, conflict, not_found, permission_denied
from ..ids import now_iso
from .store import Positions, Stream, StreamStore, dump_json
from .wire import Records

MAX_READ_LIMIT = 1000
# Its own table rather than a column, so state dirs from before owners need no migration.
OWNER_SCHEMA = """
CREATE TABLE IF NOT EXISTS stream_subscriber_owners (
    subscriber_id TEXT PRIMARY KEY REFERENCES stream_subscribers (subscriber_id) ON DELETE CASCADE,
    job_rid TEXT NOT NULL
);
"""


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


def positions_json(offsets: Positions) -> dict[str, int]:
    return {str(p): o for p, o in sorted(offsets.items())}


class SubscriberStore:
    """Subscribers of the streams in `streams`; their tables are in the streams schema (a reset clears them)."""

    def __init__(self, streams: StreamStore) -> None:
        self.streams = streams
        self.storage = streams.storage
        self.storage.ensure_schema(OWNER_SCHEMA)

    def _find(self, subscriber_id: str) -> Subscriber | None:
        row = self.storage.one("SELECT * FROM stream_subscribers WHERE subscriber_id = ?", (subscriber_id,))
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

    def subscriber(self, stream: Stream, subscriber_id: str) -> Subscriber:
        subscriber = self._find(subscriber_id)
        if subscriber is None or (subscriber.rid, subscriber.branch) != (stream.rid, stream.branch):
            raise not_found("SubscriberNotFound", subscriberId=subscriber_id)
        return subscriber

    def _owned(self, principal: Principal, stream: Stream, subscriber_id: str, denied: str) -> None:
        """403 `denied` unless `principal` may change the subscriber: the admin, its owner, or it has none."""
        self.subscriber(stream, subscriber_id)
        if principal.is_admin:
            return
        row = self.storage.one("SELECT job_rid FROM stream_subscriber_owners WHERE subscriber_id = ?", (subscriber_id,))
        if row is not None and row["job_rid"] != principal.job_rid:
            raise permission_denied(
                denied, datasetRid=stream.rid, streamBranchName=stream.branch, subscriberSubscriberId=subscriber_id,
                message="the subscriber belongs to another job",
            )  # fmt: skip

    def create(self, principal: Principal, stream: Stream, subscriber_id: str, read_position: Any) -> Subscriber:
        """Idempotent: a restarted connector re-creates its subscriber and must keep its positions."""
        with self.storage.transaction():
            existing = self._find(subscriber_id)
            if existing is not None:
                if (existing.rid, existing.branch) != (stream.rid, stream.branch):
                    raise conflict(
                        "SubscriberAlreadyExists",
                        subscriberId=subscriber_id,
                        existingDatasetRid=existing.rid,
                        existingBranchName=existing.branch,
                    )
                return existing
            position = read_position or {"type": "earliest"}
            start = self.resolve_position(stream, position)
            subscriber = Subscriber(
                subscriber_id, stream.rid, stream.branch, position, {str(p): o for p, o in start.items()}, now_iso()
            )
            self.storage.execute(
                "INSERT INTO stream_subscribers (subscriber_id, rid, branch, read_position, start_offsets,"
                " created_time) VALUES (?, ?, ?, ?, ?, ?)",
                (subscriber_id, stream.rid, stream.branch, dump_json(position), dump_json(subscriber.start_offsets),
                 subscriber.created_time),
            )  # fmt: skip
            if principal.job_rid is not None:
                self.storage.execute(
                    "INSERT INTO stream_subscriber_owners (subscriber_id, job_rid) VALUES (?, ?)",
                    (subscriber_id, principal.job_rid),
                )
            self._set_positions(subscriber_id, stream.view_rid, start)
        return subscriber

    def delete(self, principal: Principal, stream: Stream, subscriber_id: str) -> None:
        with self.storage.transaction():
            self._owned(principal, stream, subscriber_id, "DeleteSubscriberPermissionDenied")
            self.storage.execute("DELETE FROM stream_subscriber_offsets WHERE subscriber_id = ?", (subscriber_id,))
            self.storage.execute("DELETE FROM stream_subscriber_owners WHERE subscriber_id = ?", (subscriber_id,))
            self.storage.execute("DELETE FROM stream_subscribers WHERE subscriber_id = ?", (subscriber_id,))

    def positions(self, stream: Stream, subscriber_id: str) -> Positions:
        """Where the next read starts; partitions never positioned in this view start at 0 (a reset view)."""
        self.subscriber(stream, subscriber_id)
        rows = self.storage.query(
            "SELECT partition, next_offset FROM stream_subscriber_offsets WHERE subscriber_id = ? AND view_rid = ?",
            (subscriber_id, stream.view_rid),
        )
        result = dict.fromkeys(range(stream.partitions), 0)
        result.update({int(r["partition"]): int(r["next_offset"]) for r in rows if r["partition"] < stream.partitions})
        return result

    def read(
        self, principal: Principal, stream: Stream, subscriber_id: str, limit: int, partitions: list[int] | None,
        auto_commit: bool,
    ) -> dict[int, Records]:  # fmt: skip
        """Up to `limit` records from the subscriber's positions; `autoCommit` moves them past what it returns."""
        if auto_commit:  # a commit: only for whoever may commit
            self._owned(principal, stream, subscriber_id, "ReadRecordsFromSubscriberPermissionDenied")
        start = self.positions(stream, subscriber_id)
        selected = list(range(stream.partitions)) if partitions is None else partitions
        limit = min(limit, MAX_READ_LIMIT)  # the SDK documents silent capping, not an error
        fetched = {p: self.streams.records(stream, p, start[p], limit) for p in selected}
        taken = _interleave(fetched, limit)
        with self.storage.transaction():
            if auto_commit:
                moved = {p: records[-1][0] + 1 for p, records in taken.items() if records}
                self._set_positions(subscriber_id, stream.view_rid, moved)
            self.streams.record_read(principal, stream, "readRecords", taken, subscriberId=subscriber_id)
        return taken

    def commit(self, principal: Principal, stream: Stream, subscriber_id: str, offsets: Any) -> Positions:
        """`offsets` are the last the caller processed; the next read starts after them."""
        self._owned(principal, stream, subscriber_id, "CommitSubscriberOffsetsPermissionDenied")
        committed = stream.offsets(offsets, "offsets")
        ends = self.streams.end_offsets(stream)
        for partition, offset in committed.items():
            if offset >= ends[partition]:
                raise bad_request(
                    "Default:InvalidArgument",
                    message=f"offset {offset} was never written to partition {partition} (end {ends[partition]})",
                )
        moved = {p: o + 1 for p, o in committed.items()}
        with self.storage.transaction():
            self._set_positions(subscriber_id, stream.view_rid, moved)
        return moved

    def reset(self, principal: Principal, stream: Stream, subscriber_id: str, position: Any) -> Positions:
        self._owned(principal, stream, subscriber_id, "ResetSubscriberOffsetsPermissionDenied")
        with self.storage.transaction():
            new = self.resolve_position(stream, position)
            self._set_positions(subscriber_id, stream.view_rid, new)
        return new

    def resolve_position(self, stream: Stream, position: Any) -> Positions:
        """A ReadPosition (earliest | latest | specific) as offsets for every partition; 400 if malformed."""
        kind = position.get("type") if isinstance(position, dict) else None
        if kind == "earliest":
            return dict.fromkeys(range(stream.partitions), 0)
        if kind == "latest":
            return self.streams.end_offsets(stream)
        if kind == "specific":
            ends = self.streams.end_offsets(stream)
            result = dict.fromkeys(range(stream.partitions), 0)
            result.update(stream.offsets(position.get("offsets"), "offsets"))
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

    def _set_positions(self, subscriber_id: str, view_rid: str, new: Positions) -> None:
        self.storage.executemany(
            "INSERT INTO stream_subscriber_offsets (subscriber_id, view_rid, partition, next_offset)"
            " VALUES (?, ?, ?, ?)"
            " ON CONFLICT (subscriber_id, view_rid, partition) DO UPDATE SET next_offset = excluded.next_offset",
            [(subscriber_id, view_rid, p, o) for p, o in new.items()],
        )


def _interleave(fetched: dict[int, Records], limit: int) -> dict[int, Records]:
    """Share `limit` across partitions round robin, so a backlog in one does not starve the others."""
    taken: dict[int, Records] = {p: [] for p in fetched}
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
