"""Read-only summaries of streams for people (the web page): end offsets, latest records, subscribers' lag.

Nothing here writes or records provenance: looking at a stream is not a job's read, so lineage stays what
the connectors did.
"""

from __future__ import annotations

import json
from typing import Any

from .store import Stream, StreamStore
from .subscribers import SubscriberStore, positions_json


class StreamSummaries:
    def __init__(self, streams: StreamStore, subscribers: SubscriberStore) -> None:
        self.streams = streams
        self.subscribers = subscribers
        self.storage = streams.storage

    def all(self) -> list[Stream]:
        """Every stream (each branch of each streaming dataset), oldest first."""
        rows = self.storage.query("SELECT rid, branch FROM streams ORDER BY created_time, rid, branch")
        found = (self.streams.find(r["rid"], r["branch"]) for r in rows)
        return [s for s in found if s is not None]

    def overview(self, stream: Stream) -> dict[str, Any]:
        """What a list of streams shows: size and how far behind its subscribers are."""
        ends = self.streams.end_offsets(stream)
        subscribers = self.subscriber_lag(stream, ends)
        return {
            "rid": stream.rid,
            "branch": stream.branch,
            "viewRid": stream.view_rid,
            "partitions": stream.partitions,
            "endOffsets": positions_json(ends),
            "totalRecords": sum(ends.values()),
            "subscribers": len(subscribers),
            "maxLag": max((s["lag"] for s in subscribers), default=0),
        }

    def detail(self, stream: Stream, latest: int) -> dict[str, Any]:
        """The overview plus the last `latest` records of each partition (values as JSON) and each subscriber."""
        ends = self.streams.end_offsets(stream)
        partitions = []
        for p in range(stream.partitions):
            records = self.streams.latest(stream, p, latest)
            latest_json = [{"offset": offset, "value": json.loads(raw)} for offset, raw in records]
            partitions.append({"partition": p, "endOffset": ends[p], "latest": latest_json})
        return {
            **self.overview(stream),
            "streamType": stream.stream_type,
            "schema": stream.schema,
            "partitionDetails": partitions,
            "subscriberDetails": self.subscriber_lag(stream, ends),
        }

    def subscriber_lag(self, stream: Stream, ends: dict[int, int]) -> list[dict[str, Any]]:
        """Each subscriber's next offsets, its owning job (if any) and lag: records written it has not committed."""
        rows = self.storage.query(
            "SELECT s.subscriber_id, s.created_time, o.job_rid FROM stream_subscribers s"
            " LEFT JOIN stream_subscriber_owners o ON o.subscriber_id = s.subscriber_id"
            " WHERE s.rid = ? AND s.branch = ? ORDER BY s.created_time, s.subscriber_id",
            (stream.rid, stream.branch),
        )
        result = []
        for row in rows:
            positions = self.subscribers.positions(stream, row["subscriber_id"])
            lag = {p: max(0, ends[p] - positions.get(p, 0)) for p in ends}
            result.append(
                {
                    "subscriberId": row["subscriber_id"],
                    "jobRid": row["job_rid"],
                    "createdTime": row["created_time"],
                    "positions": positions_json(positions),
                    "lagByPartition": positions_json(lag),
                    "lag": sum(lag.values()),
                }
            )
        return result
