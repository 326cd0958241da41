"""Stream inputs over the Streams API v2: read batches, commit after acks."""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, NotRequired
from urllib.parse import quote

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic needs it for a generic TypedDict before Python 3.12

from .._errors import FoundryError, validation_message
from .._handles import ModelT, list_adapter
from .._http import Params
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


class _Entry(TypedDict, Generic[ModelT]):
    offset: int
    value: ModelT


class _Read(TypedDict, Generic[ModelT]):
    recordsByPartition: NotRequired[dict[str, list[_Entry[ModelT]]] | None]


class _Validated:
    """What a read's fast path gives: the body parsed and validated in one pass, values already models."""

    __slots__ = ("body",)

    def __init__(self, body: Any) -> None:
        self.body = body


@functools.cache
def _read_adapters(model: type[ModelT]) -> tuple[TypeAdapter[_Read[ModelT]], TypeAdapter[list[_Entry[ModelT]]]]:
    """readRecords' and getRecords' answers with their values as `model`, parsed from the raw bytes by
    pydantic's core: no intermediate dicts, no second pass. Any failure (an invalid record, an unexpected
    shape, bad JSON) falls back to the plain JSON and the record by record path, which keeps every guarantee."""
    return TypeAdapter(_Read[model]), TypeAdapter(list[_Entry[model]])  # type: ignore[valid-type]


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
        self._turn = -1  # the partition read ahead last (index in the sorted cursor)

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
        if self.partition_ids is not None:
            worker = self.binding.runtime.worker_index
            self.log.info("worker reads partitions", alias=self.alias, worker=worker, partitions=self.partition_ids)

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
        owns = self.binding.runtime.owns  # one of several workers: only its share of the partitions
        self.committed = {p: o for p, o in self.committed.items() if owns(p)}
        self.cursor = dict(self.committed)

    @property
    def partition_ids(self) -> list[str] | None:
        """The partitions this process reads when it is one of several workers (CONNECTOR_WORKERS); else None."""
        runtime = self.binding.runtime
        if runtime.worker_index is None:
            return None
        return [str(p) for p in range(self.info.partitions if self.info else 1) if runtime.owns(p)]

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
        owns = self.binding.runtime.owns
        lag = sum(max(0, end - self.committed.get(p, 0)) for p, end in ends.items() if owns(p))
        self.metrics.lag = lag
        return lag

    async def read_batch(self, limit: int | None = None) -> InputBatch[ModelT]:
        """The next records after the cursor (possibly none). Does not commit."""
        limit = limit or self.binding.runtime.read_batch_size
        view = self.view_rid
        validated: set[str] = set()
        try:
            if self.mode == "subscriber" and self.cursor == self.committed:
                read_adapter = _read_adapters(self.model)[0]
                body = await self.client.request_parsed(
                    "POST",
                    self._subscriber_path("/readRecords"),
                    lambda raw: _Validated(read_adapter.validate_json(raw)),
                    service="stream_proxy",
                    params={"preview": True},
                    json={
                        "limit": limit,
                        **({"viewRid": view} if view else {}),
                        **({"partitionIds": ids} if (ids := self.partition_ids) is not None else {}),
                    },
                )
                if isinstance(body, _Validated):
                    body = body.body
                    validated = {str(p) for p in (body.get("recordsByPartition") or {})}
                by_partition: dict[str, list[dict[str, Any]]] = (body or {}).get("recordsByPartition") or {}
            else:
                by_partition, validated = await self._get_records(limit)
        except FoundryError as exc:
            if not is_view_gone(exc):
                raise
            await self._on_view_gone()
            return InputBatch(self, [], {}, view_rid=self.view_rid)
        if self._went_backwards(by_partition) and await self.refresh_view():
            await self._start_positions()  # a server that does not check viewRid: offsets restarted
            return InputBatch(self, [], {}, view_rid=self.view_rid)
        return self._to_batch(by_partition, validated)

    def _went_backwards(self, by_partition: dict[str, list[dict[str, Any]]]) -> bool:
        return any(
            entries and int(entries[0]["offset"]) < self.committed.get(str(p), 0) for p, entries in by_partition.items()
        )

    async def _get_records(self, limit: int) -> tuple[dict[str, list[dict[str, Any]]], set[str]]:
        """Up to `limit` records of one partition from the cursor, the partitions taken in turn (an empty one
        passes its turn on to the next): one request per batch while reading ahead, where a request per
        partition with a share of the limit each cost several requests per batch. Also says whether the
        answer came back validated already."""
        owned = self.partition_ids
        every = [str(p) for p in range(self.info.partitions if self.info else 1)]
        partitions = sorted(self.cursor) or (every if owned is None else owned)
        entries_adapter = _read_adapters(self.model)[1]

        def fast(raw: bytes) -> _Validated:
            return _Validated(entries_adapter.validate_json(raw))

        for _ in partitions:  # a worker with no partition of this input (fewer partitions than workers): none
            self._turn = (self._turn + 1) % len(partitions)
            partition = partitions[self._turn]
            body = await self.records_from(partition, self.cursor.get(partition, 0), limit, fast)
            validated = isinstance(body, _Validated)
            entries = list((body.body if validated else body) or [])
            if entries:
                return {partition: entries}, {partition} if validated else set()
        return {}, set()

    async def records_from(
        self, partition: str, start: int, limit: int, fast: Callable[[bytes], Any] | None = None
    ) -> Any:
        """getRecords of `partition` from offset `start` in the view opened: the JSON answer, or what `fast`
        made of its bytes (see `FoundryClient.request_parsed`)."""
        path = stream_path(self.rid, self.branch, "/getRecords", high_scale=True)
        params: Params = {
            "partitionId": partition, "startOffset": start, "limit": limit, "preview": True, "viewRid": self.view_rid,
        }  # fmt: skip
        if fast is None:
            return await self.client.request_json("GET", path, service="stream_proxy", params=params)
        return await self.client.request_parsed("GET", path, fast, service="stream_proxy", params=params)

    def _to_batch(self, by_partition: dict[str, list[dict[str, Any]]], validated: set[str]) -> InputBatch[ModelT]:
        """The records of each partition: validated already when the read's fast path took them, else validated
        in one call (pydantic's core); only when that fails, one by one, so each invalid record is kept with
        its position and the valid ones go on."""
        batch: InputBatch[ModelT] = InputBatch(self, [], {}, view_rid=self.view_rid)
        for partition, entries in by_partition.items():
            if not entries:
                continue
            key = str(partition)
            valid = key in validated  # values are models and offsets ints already
            offsets = [entry["offset"] for entry in entries] if valid else [int(entry["offset"]) for entry in entries]
            batch.positions[key] = max(max(offsets), batch.positions.get(key, -1))
            if valid:
                batch.records += [entry["value"] for entry in entries]
                batch.origins += [(key, offset) for offset in offsets]
                continue
            raws = [entry.get("value") for entry in entries]
            try:
                batch.records += list_adapter(self.model).validate_python(raws)
                batch.origins += [(key, offset) for offset in offsets]
            except ValidationError:
                for raw, offset in zip(raws, offsets, strict=True):
                    try:
                        batch.records.append(self.model.model_validate(raw))
                        batch.origins.append((key, offset))
                    except ValidationError as exc:
                        batch.invalid.append(InvalidRecord(key, offset, raw, validation_message(exc)))
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
