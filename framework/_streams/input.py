"""Stream inputs over the Streams API v2: read batches, commit after acks."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Generic, Literal
from urllib.parse import quote

from pydantic import ValidationError

from .._errors import FoundryError, validation_message
from .._handles import ModelT
from .api import StreamHandle, StreamInfo, get_stream, is_view_gone, stream_path


@dataclass
class InvalidRecord:
    """A record that failed validation: kept with its position (when it has one) so it is never lost silently."""

    partition: str | None
    offset: int | None
    raw: Any
    error: str


@dataclass
class InputBatch(Generic[ModelT]):
    """Records read in one call. `positions` are the last offsets per partition: what gets committed."""

    source: StreamInput[ModelT]
    records: list[ModelT]
    positions: dict[str, int]
    invalid: list[InvalidRecord] = field(default_factory=list)
    origins: list[tuple[str, int]] = field(default_factory=list)  # (partition, offset) of each record
    view_rid: str | None = None  # the view read: a batch of a view since reset is never committed

    @property
    def size(self) -> int:
        return len(self.records) + len(self.invalid)


class StreamInput(StreamHandle[ModelT]):
    """Reads records of a Foundry stream as pydantic models, resuming where the last run committed.

    Guarantees: at-least-once. In the default `subscriber` read mode the read position lives on the
    server (a subscriber per connector and alias); `commit` is called by the connector only after
    every output of a batch was acknowledged, so a killed connector re-reads at most its uncommitted
    batches. Reads go through `readRecords` when nothing is in flight and through `getRecords` from a
    local cursor when earlier batches are still uncommitted, which lets the connector read ahead.
    The `earliest`/`latest` read modes (for streams without subscribers) keep the position in memory
    only: a restart starts again from the earliest or latest offset.

    Records that fail validation are not dropped: they come back in `InputBatch.invalid`.

    A reset of the stream (a new, empty view) is noticed on the next read or commit (they name the view
    opened): it is logged once, reading goes on from the new view's start (its subscriber position), and
    batches of the old view still in flight are published but never committed, since their offsets mean
    nothing in the new view.
    """

    _after_reset = "reading goes on from the new view's start; batches of the old view are not committed"

    direction = "input"

    def __init__(
        self,
        alias: str,
        *,
        model: type[ModelT] | None = None,
        start: Literal["earliest", "latest"] = "earliest",
        subscriber_id: str | None = None,
    ) -> None:
        super().__init__(alias, model=model)
        self.start, self._subscriber_id = start, subscriber_id

    def _on_bind(self) -> None:
        self.info: StreamInfo | None = None
        self.committed: dict[str, int] = {}  # partition -> next offset to read after a restart
        self.cursor: dict[str, int] = {}  # partition -> next offset to read now

    @property
    def mode(self) -> Literal["subscriber", "earliest", "latest"]:
        return self.binding.runtime.read_mode

    @property
    def subscriber_id(self) -> str:
        """Stable across restarts (that is what resumes the position) and unique per input stream, since
        Foundry subscriber ids are unique across streams: `<connector>-<alias>-<hash of rid and branch>`."""
        if self._subscriber_id or self.binding.runtime.subscriber_id:
            return str(self._subscriber_id or self.binding.runtime.subscriber_id)
        digest = hashlib.sha256(f"{self.rid}:{self.branch}".encode()).hexdigest()[:12]
        return f"{self.binding.connector_name}-{self.alias}-{digest}"

    def _subscriber_path(self, action: str = "") -> str:
        sub = f"/subscribers/{quote(self.subscriber_id, safe='')}{action}"
        return stream_path(self.rid, self.branch, sub, high_scale=bool(action))

    async def check(self) -> None:
        await super().check()
        await self.end_offsets()

    async def open(self) -> None:
        self.info = await get_stream(self)
        await self._start_positions()
        self.log.info("input opened", alias=self.alias, mode=self.mode, position=self.committed)

    async def _start_positions(self) -> None:
        """Where reading starts in the current view: the subscriber's position, or earliest / latest."""
        if self.mode == "subscriber":
            await self.client.request_json(
                "POST",
                stream_path(self.rid, self.branch, "/subscribers"),
                params={"preview": True},
                json={"subscriberId": self.subscriber_id, "readPosition": {"type": self.start}},
            )
            position = await self.client.request_json(
                "GET",
                self._subscriber_path("/getReadPosition"),
                service="stream_proxy",
                params={"preview": True, "viewRid": self.view_rid},
            )
            self.committed = {str(p): int(o) for p, o in (position or {}).items()}
        elif self.mode == "latest":
            self.committed = await self.end_offsets()
        else:
            self.committed = {str(p): 0 for p in range(self.info.partitions if self.info else 1)}
        self.cursor = dict(self.committed)

    async def _on_view_gone(self) -> None:
        """The stream was reset: go on from the new view's start (its positions replace the old ones)."""
        if await self.refresh_view():
            await self._start_positions()

    async def end_offsets(self) -> dict[str, int]:
        body = await self.client.request_json(
            "GET",
            stream_path(self.rid, self.branch, "/getEndOffsets", high_scale=True),
            service="stream_proxy",
            params={"preview": True},
        )
        return {str(p): int(o) for p, o in (body or {}).items()}

    async def lag(self) -> int:
        """Records written to the stream but not yet committed by this connector."""
        ends = await self.end_offsets()
        lag = sum(max(0, end - self.committed.get(p, 0)) for p, end in ends.items())
        self.metrics.lag = lag
        return lag

    async def read_batch(self, limit: int | None = None) -> InputBatch[ModelT]:
        """The next records after the cursor (possibly none). Does not commit."""
        limit = limit or self.binding.runtime.read_batch_size
        view = self.view_rid
        try:
            if self.mode == "subscriber" and self.cursor == self.committed:
                body = await self.client.request_json(
                    "POST",
                    self._subscriber_path("/readRecords"),
                    service="stream_proxy",
                    params={"preview": True},
                    json={"limit": limit, **({"viewRid": view} if view else {})},
                )
                by_partition: dict[str, list[dict[str, Any]]] = (body or {}).get("recordsByPartition") or {}
            else:
                by_partition = await self._get_records(limit)
        except FoundryError as exc:
            if not is_view_gone(exc):
                raise
            await self._on_view_gone()
            return InputBatch(self, [], {}, view_rid=self.view_rid)
        if self._went_backwards(by_partition) and await self.refresh_view():
            await self._start_positions()  # a server that does not check viewRid: offsets restarted
            return InputBatch(self, [], {}, view_rid=self.view_rid)
        return self._to_batch(by_partition)

    def _went_backwards(self, by_partition: dict[str, list[dict[str, Any]]]) -> bool:
        return any(
            entries and int(entries[0]["offset"]) < self.committed.get(str(p), 0) for p, entries in by_partition.items()
        )

    async def _get_records(self, limit: int) -> dict[str, list[dict[str, Any]]]:
        partitions = sorted(self.cursor) or [str(p) for p in range(self.info.partitions if self.info else 1)]
        per_partition = max(1, math.ceil(limit / len(partitions)))

        async def one(partition: str) -> list[dict[str, Any]]:
            body = await self.client.request_json(
                "GET",
                stream_path(self.rid, self.branch, "/getRecords", high_scale=True),
                service="stream_proxy",
                params={
                    "partitionId": partition,
                    "startOffset": self.cursor.get(partition, 0),
                    "limit": per_partition,
                    "preview": True,
                    "viewRid": self.view_rid,
                },
            )
            return list(body or [])

        results = await asyncio.gather(*(one(p) for p in partitions))
        return dict(zip(partitions, results, strict=True))

    def _to_batch(self, by_partition: dict[str, list[dict[str, Any]]]) -> InputBatch[ModelT]:
        batch: InputBatch[ModelT] = InputBatch(self, [], {}, view_rid=self.view_rid)
        for partition, entries in by_partition.items():
            for entry in entries:
                offset = int(entry["offset"])
                raw = entry.get("value")
                batch.positions[str(partition)] = max(offset, batch.positions.get(str(partition), -1))
                try:
                    batch.records.append(self.model.model_validate(raw))
                    batch.origins.append((str(partition), offset))
                except ValidationError as exc:
                    batch.invalid.append(InvalidRecord(str(partition), offset, raw, validation_message(exc)))
        for partition, last in batch.positions.items():
            self.cursor[partition] = max(self.cursor.get(partition, 0), last + 1)
        self.metrics.records += len(batch.records)
        self.metrics.invalid += len(batch.invalid)
        self.metrics.batches += 1 if batch.size else 0
        return batch

    async def commit(self, positions: dict[str, int], *, view_rid: str | None = None) -> None:
        """Record that everything up to and including `positions` is fully processed.

        `view_rid`: the view the positions were read from; positions of a view since reset are dropped.
        """
        if not positions or (view_rid is not None and view_rid != self.view_rid):
            return
        if self.mode == "subscriber":
            view = self.view_rid
            try:
                await self.client.request_json(
                    "POST",
                    self._subscriber_path("/commitOffsets"),
                    service="stream_proxy",
                    params={"preview": True},
                    json={"offsets": positions, **({"viewRid": view} if view else {})},
                )
            except FoundryError as exc:
                if not is_view_gone(exc):
                    raise
                await self._on_view_gone()
                return
        for partition, last in positions.items():
            self.committed[partition] = max(self.committed.get(partition, 0), last + 1)
        self.metrics.committed_at = time.monotonic()
