"""Stream inputs and outputs over the Streams API v2 (foundry-api.md section 2a)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from ._errors import BadRequestError, RecordValidationError
from ._handles import ModelHandle, ModelT, as_model, track


def _stream_path(rid: str, branch: str, suffix: str = "", *, high_scale: bool = False) -> str:
    base = "/v2/highScale/streams" if high_scale else "/v2/streams"
    return f"{base}/datasets/{quote(rid, safe='')}/streams/{quote(branch, safe='')}{suffix}"


def _validation_message(exc: ValidationError) -> str:
    """One line: pydantic's multi-line report flattened to `field: problem; ...`."""
    parts = [f"{'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}" for err in exc.errors()]
    return "; ".join(parts)


@dataclass
class InvalidRecord:
    """A record that failed validation: kept with its position so it is never lost silently."""

    partition: str
    offset: int
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

    @property
    def size(self) -> int:
        return len(self.records) + len(self.invalid)


@dataclass
class StreamInfo:
    view_rid: str
    partitions: int
    schema: dict[str, Any]


async def _get_stream(handle: ModelHandle[Any]) -> StreamInfo:
    body = await handle.client.request_json("GET", _stream_path(handle.rid, handle.branch))
    return StreamInfo(
        view_rid=str(body.get("viewRid", "")),
        partitions=int(body.get("partitionsCount") or 1),
        schema=body.get("schema") or {},
    )


class StreamInput(ModelHandle[ModelT]):
    """Reads records of a Foundry stream as pydantic models, resuming where the last run committed.

    Guarantees: at-least-once. In the default `subscriber` read mode the read position lives on the
    server (a subscriber per connector and alias); `commit` is called by the connector only after
    every output of a batch was acknowledged, so a killed connector re-reads at most its uncommitted
    batches. Reads go through `readRecords` when nothing is in flight and through `getRecords` from a
    local cursor when earlier batches are still uncommitted, which lets the connector read ahead.
    The `earliest`/`latest` read modes (for streams without subscribers) keep the position in memory
    only: a restart starts again from the earliest or latest offset.

    Records that fail validation are not dropped: they come back in `InputBatch.invalid`.
    """

    direction = "input"
    kind = "stream"

    def __init__(
        self,
        alias: str,
        *,
        model: type[ModelT] | None = None,
        start: Literal["earliest", "latest"] = "earliest",
        subscriber_id: str | None = None,
    ) -> None:
        super().__init__(alias, model=model)
        self.start = start
        self._subscriber_id = subscriber_id
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
        return _stream_path(self.rid, self.branch, sub, high_scale=bool(action))

    async def check(self) -> None:
        self.model  # noqa: B018 - raises a ConfigError when the model is missing
        self.info = await _get_stream(self)
        await self.end_offsets()

    async def open(self) -> None:
        self.info = await _get_stream(self)
        if self.mode == "subscriber":
            await self.client.request_json(
                "POST",
                _stream_path(self.rid, self.branch, "/subscribers"),
                params={"preview": True},
                json={"subscriberId": self.subscriber_id, "readPosition": {"type": self.start}},
            )
            position = await self.client.request_json(
                "GET", self._subscriber_path("/getReadPosition"), service="stream_proxy", params={"preview": True}
            )
            self.committed = {str(p): int(o) for p, o in (position or {}).items()}
        elif self.mode == "latest":
            self.committed = await self.end_offsets()
        else:
            self.committed = {str(p): 0 for p in range(self.info.partitions)}
        self.cursor = dict(self.committed)
        self.log.info("input opened", alias=self.alias, mode=self.mode, position=self.committed)

    async def end_offsets(self) -> dict[str, int]:
        body = await self.client.request_json(
            "GET",
            _stream_path(self.rid, self.branch, "/getEndOffsets", high_scale=True),
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
        if self.mode == "subscriber" and self.cursor == self.committed:
            body = await self.client.request_json(
                "POST",
                self._subscriber_path("/readRecords"),
                service="stream_proxy",
                params={"preview": True},
                json={"limit": limit},
            )
            by_partition: dict[str, list[dict[str, Any]]] = (body or {}).get("recordsByPartition") or {}
        else:
            by_partition = await self._get_records(limit)
        return self._to_batch(by_partition)

    async def _get_records(self, limit: int) -> dict[str, list[dict[str, Any]]]:
        partitions = sorted(self.cursor) or [str(p) for p in range(self.info.partitions if self.info else 1)]
        per_partition = max(1, math.ceil(limit / len(partitions)))

        async def one(partition: str) -> list[dict[str, Any]]:
            body = await self.client.request_json(
                "GET",
                _stream_path(self.rid, self.branch, "/getRecords", high_scale=True),
                service="stream_proxy",
                params={
                    "partitionId": partition,
                    "startOffset": self.cursor.get(partition, 0),
                    "limit": per_partition,
                    "preview": True,
                },
            )
            return list(body or [])

        results = await asyncio.gather(*(one(p) for p in partitions))
        return dict(zip(partitions, results, strict=True))

    def _to_batch(self, by_partition: dict[str, list[dict[str, Any]]]) -> InputBatch[ModelT]:
        batch: InputBatch[ModelT] = InputBatch(self, [], {})
        for partition, entries in by_partition.items():
            for entry in entries:
                offset = int(entry["offset"])
                raw = entry.get("value")
                batch.positions[str(partition)] = max(offset, batch.positions.get(str(partition), -1))
                try:
                    batch.records.append(self.model.model_validate(raw))
                    batch.origins.append((str(partition), offset))
                except ValidationError as exc:
                    batch.invalid.append(InvalidRecord(str(partition), offset, raw, _validation_message(exc)))
        for partition, last in batch.positions.items():
            self.cursor[partition] = max(self.cursor.get(partition, 0), last + 1)
        self.metrics.records += len(batch.records)
        self.metrics.invalid += len(batch.invalid)
        self.metrics.batches += 1 if batch.size else 0
        return batch

    async def commit(self, positions: dict[str, int]) -> None:
        """Record that everything up to and including `positions` is fully processed."""
        if not positions:
            return
        if self.mode == "subscriber":
            await self.client.request_json(
                "POST",
                self._subscriber_path("/commitOffsets"),
                service="stream_proxy",
                params={"preview": True},
                json={"offsets": positions},
            )
        for partition, last in positions.items():
            self.committed[partition] = max(self.committed.get(partition, 0), last + 1)


Rejected = Callable[[dict[str, Any], str], Awaitable[None]]


class StreamOutput(ModelHandle[ModelT]):
    """Publishes pydantic records to a Foundry stream in batches (publishRecords).

    `publish` validates the record against the model at once (a bad record raises
    `RecordValidationError` in the caller) and buffers it; a background flusher sends a batch when
    `batch_size` records are waiting or `linger_ms` after the first one arrived, one request at a time
    so order is kept. Every publish made while the connector processes an input batch holds that
    batch's commit until the server acknowledged it. `flush()` waits for everything buffered.
    If the server rejects a batch as not matching the stream schema, its records are retried one by
    one and only the rejected ones go to the connector's dead-letter output (or stop it when it has none).
    """

    direction = "output"
    kind = "stream"

    def __init__(
        self,
        alias: str,
        *,
        model: type[ModelT] | None = None,
        batch_size: int | None = None,
        linger_ms: float | None = None,
    ) -> None:
        super().__init__(alias, model=model)
        self._batch_size = batch_size
        self._linger_ms = linger_ms
        self.info: StreamInfo | None = None
        self.on_rejected: Rejected | None = None
        self._buffer: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._first_at = 0.0
        self._kick = asyncio.Event()
        self._space = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._inflight: list[asyncio.Future[None]] = []
        self._urgent = False  # flush() asked: send without lingering until the buffer is empty

    @property
    def batch_size(self) -> int:
        return self._batch_size or self.binding.runtime.publish_batch_size

    @property
    def linger_s(self) -> float:
        return (self._linger_ms if self._linger_ms is not None else self.binding.runtime.publish_linger_ms) / 1000

    async def check(self) -> None:
        self.model  # noqa: B018 - raises a ConfigError when the model is missing
        self.info = await _get_stream(self)

    async def open(self) -> None:
        self.info = await _get_stream(self)
        # Fresh events: a bound copy must not share them with the class-level declaration.
        self._buffer, self._kick, self._space = [], asyncio.Event(), asyncio.Event()
        self._flusher = asyncio.create_task(self._flush_loop(), name=f"flush-{self.alias}")

    def _serialize(self, record: ModelT | dict[str, Any] | BaseModel) -> dict[str, Any]:
        try:
            model = as_model(self.model, record)
        except ValidationError as exc:
            raise RecordValidationError(self.alias, _validation_message(exc), record) from exc
        return model.model_dump(mode="json", by_alias=True)

    async def publish(self, record: ModelT | dict[str, Any]) -> None:
        """Validate and buffer one record; waits only when the buffer is full (backpressure)."""
        await self._publish_payload(self._serialize(record))

    async def publish_many(self, records: Iterable[ModelT | dict[str, Any]]) -> None:
        payloads = [self._serialize(r) for r in records]  # validate all before buffering any
        for payload in payloads:
            await self._publish_payload(payload)

    async def _publish_payload(self, payload: dict[str, Any]) -> None:
        if self._flusher is None:
            raise RuntimeError(f"output {self.alias!r} is not open")
        if self._flusher.done():
            self._flusher.result()  # re-raise why the flusher died
        while len(self._buffer) >= 4 * self.batch_size:
            self._space.clear()
            self._kick.set()
            await self._space.wait()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._buffer:
            self._first_at = time.monotonic()
        self._buffer.append((payload, future))
        track(future)
        self._kick.set()

    async def publish_binary(self, data: bytes) -> None:
        """One binary record (the stream's schema must be a single binary field); sent at once."""
        await self.flush()
        await self.client.request_json(
            "POST",
            _stream_path(self.rid, self.branch, "/publishBinaryRecord", high_scale=True),
            service="stream_proxy",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        self.metrics.records += 1
        self.metrics.bytes += len(data)

    async def _flush_loop(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            if not self._buffer:
                continue
            wait = self._first_at + self.linger_s - time.monotonic()
            if len(self._buffer) < self.batch_size and wait > 0 and not self._urgent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._until_full(), wait)
            chunk, self._buffer = self._buffer[: self.batch_size], self._buffer[self.batch_size :]
            self._first_at = time.monotonic()
            if self._buffer:
                self._kick.set()
            else:
                self._urgent = False
            self._space.set()
            self._inflight = [future for _, future in chunk]
            try:
                await self._send(chunk)
            finally:
                self._inflight = []

    async def _until_full(self) -> None:
        while len(self._buffer) < self.batch_size and not self._urgent:
            self._kick.clear()
            await self._kick.wait()

    async def _send(self, chunk: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        records = [payload for payload, _ in chunk]
        path = _stream_path(self.rid, self.branch, "/publishRecords", high_scale=True)
        try:
            await self.client.request_json("POST", path, service="stream_proxy", json={"records": records})
        except BadRequestError as exc:
            if exc.error_name != "RecordDoesNotMatchStreamSchema":
                _fail(chunk, exc)
                return
            await self._send_one_by_one(chunk)
            return
        except Exception as exc:
            _fail(chunk, exc)
            return
        self.metrics.records += len(chunk)
        self.metrics.batches += 1
        for _, future in chunk:
            if not future.done():
                future.set_result(None)

    async def _send_one_by_one(self, chunk: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        path = _stream_path(self.rid, self.branch, "/publishRecord", high_scale=True)
        for payload, future in chunk:
            try:
                await self.client.request_json("POST", path, service="stream_proxy", json={"record": payload})
                self.metrics.records += 1
            except BadRequestError as exc:
                self.metrics.invalid += 1
                if self.on_rejected is None:
                    future.set_exception(
                        RecordValidationError(self.alias, f"rejected by the stream schema: {exc}", payload)
                    )
                    continue
                try:
                    await self.on_rejected(payload, str(exc))
                except Exception as dead_letter_exc:
                    future.set_exception(dead_letter_exc)
                    continue
            except Exception as exc:
                future.set_exception(exc)
                continue
            future.set_result(None)

    @property
    def pending(self) -> int:
        return len(self._buffer) + len(self._inflight)

    async def flush(self) -> None:
        """Send everything buffered now and wait until the server acknowledged it."""
        futures = self._inflight + [f for _, f in self._buffer]
        if self._buffer:
            self._urgent = True
            self._kick.set()
        if futures:
            await asyncio.gather(*futures)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flusher
        for _, future in self._buffer:
            if not future.done():
                future.set_exception(RuntimeError(f"output {self.alias!r} closed before the record was sent"))
        self._buffer = []


def _fail(chunk: list[tuple[dict[str, Any], asyncio.Future[None]]], exc: BaseException) -> None:
    for _, future in chunk:
        if not future.done():
            future.set_exception(exc)


class DeadLetter(BaseModel):
    """A record the connector could not process, with where it came from and why."""

    source: str
    partition: str | None = None
    offset: int | None = None
    error: str
    raw: str
    connector: str
    time: str


class DeadLetterOutput(StreamOutput[DeadLetter]):
    """Where invalid records go instead of being dropped: declare one and the connector keeps going.

    The stream needs the `DeadLetter` schema (`framework.stream_schema(DeadLetter)`).
    """

    def __init__(self, alias: str, *, batch_size: int | None = None, linger_ms: float | None = None) -> None:
        super().__init__(alias, model=DeadLetter, batch_size=batch_size, linger_ms=linger_ms)

    async def send(
        self, source: str, error: str, raw: Any, *, partition: str | None = None, offset: int | None = None
    ) -> None:
        await self.publish(
            DeadLetter(
                source=source,
                partition=partition,
                offset=offset,
                error=error,
                raw=raw if isinstance(raw, str) else json.dumps(raw, default=_json_default),
                connector=self.binding.connector_name,
                time=datetime.now(UTC).isoformat(timespec="milliseconds"),
            )
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)
