"""Stream outputs over the Streams API v2: batched, ordered publishing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .._errors import BadRequestError, FoundryError, RecordValidationError, RequestTooLargeError, validation_message
from .._handles import ModelT, Origin, as_model, current_origin, list_adapter, track
from .._responses import dumps_bytes, loads
from .api import StreamHandle, StreamInfo, get_stream, is_view_gone, stream_path

_JSON = {"Content-Type": "application/json"}

#: Called with a record the server rejected, why, and the input position that produced it (when known).
Rejected = Callable[[dict[str, Any], str, Origin | None], Awaitable[None]]


class _Ticket:
    """The acknowledgement of one `publish` / `publish_many` call: done when all its records are, failed with
    the first failure. One future per call rather than per record is what keeps publishing cheap per record."""

    __slots__ = ("future", "remaining")

    def __init__(self, count: int) -> None:
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # The error reaches the caller through the batch's AckTracker or `flush`; retrieving it here keeps
        # asyncio from reporting every failed write as "Future exception was never retrieved" at exit.
        self.future.add_done_callback(_retrieve)
        self.remaining = count

    def done(self, count: int = 1) -> None:
        self.remaining -= count
        if self.remaining <= 0 and not self.future.done():
            self.future.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class _Records:
    """The records of one `publish_many` call as the JSON array they are sent as, encoded once (in pydantic's
    core) when published: requests splice it into their bodies. Decoded again only when a request takes part
    of it (a batch boundary, a rejected batch split in halves), so what is sent is what was published."""

    __slots__ = ("_items", "count", "json", "origin", "origins", "ticket")

    def __init__(
        self, json: bytes, count: int, ticket: _Ticket, origin: Origin | None, origins: Sequence[Origin | None] | None
    ) -> None:
        self.json, self.count, self.ticket = json, count, ticket
        self.origin, self.origins = origin, origins  # one input position for all, or one per record
        self._items: list[Any] | None = None

    def items(self) -> list[Any]:
        if self._items is None:
            self._items = loads(self.json)
        return self._items


@dataclass(slots=True)
class _Part:
    """Records [start, end) of one call: how the buffer holds them and a request sends them."""

    records: _Records
    start: int
    end: int

    @property
    def count(self) -> int:
        return self.end - self.start

    def elements(self) -> bytes:
        """The part's records as JSON array elements (no brackets), ready to join into a body."""
        records = self.records
        if self.start == 0 and self.end == records.count:
            return records.json[1:-1]
        return dumps_bytes(records.items()[self.start : self.end])[1:-1]

    def split(self, count: int) -> tuple[_Part, _Part]:
        middle = self.start + count
        return _Part(self.records, self.start, middle), _Part(self.records, middle, self.end)

    def payload(self) -> dict[str, Any]:
        """The first record as published (a rejected part is one record)."""
        item: dict[str, Any] = self.records.items()[self.start]
        return item

    def origin(self) -> Origin | None:
        records = self.records
        return records.origin if records.origins is None else records.origins[self.start]


def rejects_the_record(exc: FoundryError) -> bool:
    """Errors about a record itself, not the request: its schema, or its size (413 RecordTooLarge). A batch
    answered with one is split until the offending records are alone, so the rest is still published."""
    schema = isinstance(exc, BadRequestError) and exc.error_name == "RecordDoesNotMatchStreamSchema"
    return schema or isinstance(exc, RequestTooLargeError)


class StreamOutput(StreamHandle[ModelT]):
    """Publishes pydantic records to a Foundry stream in batches (publishRecords).

    `publish` validates the record against the model at once (a bad record raises
    `RecordValidationError` in the caller) and buffers it; a background flusher sends a batch when
    `batch_size` records are waiting or `linger_ms` after the first one arrived, one request at a time
    so order is kept. Every publish made while the connector processes an input batch holds that
    batch's commit until the server acknowledged it. `flush()` waits for everything buffered.
    If the server rejects a batch for one of its records (400 RecordDoesNotMatchStreamSchema, or 413
    RecordTooLarge for a record or a body over its limit), the batch is split in halves until the offending
    records are alone: only those go to the connector's dead-letter output, with the reason and the input
    position that produced them (or fail their publish when it has none); the rest is published, in order.
    """

    direction = "output"
    _after_reset = "publishing goes on into the new view"
    #: Called with a record the server rejected; the driver wires it to the dead-letter output.
    on_rejected: Rejected | None

    def __init__(
        self,
        alias: str,
        *,
        batch_size: int | None = None,
        linger_ms: float | None = None,
        model: type[ModelT] | None = None,
    ) -> None:
        super().__init__(alias, model=model)
        self._batch_size = batch_size
        self._linger_ms = linger_ms

    def _on_bind(self) -> None:
        self.info: StreamInfo | None = None
        self.on_rejected: Rejected | None = None
        self._buffer: deque[_Part] = deque()
        self._buffered = 0  # records in the buffer
        self._first_at = 0.0
        self._kick = asyncio.Event()
        self._space = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._inflight: list[_Part] = []
        #: Set by the driver while it holds records a transform returned: they are published before any other.
        self.before_publish: Callable[[], Awaitable[None]] | None = None
        self._urgent = False  # flush() asked: send without lingering until the buffer is empty

    @property
    def batch_size(self) -> int:
        return self._batch_size or self.binding.runtime.publish_batch_size

    @property
    def linger_s(self) -> float:
        return (self._linger_ms if self._linger_ms is not None else self.binding.runtime.publish_linger_ms) / 1000

    async def open(self) -> None:
        self.info = await get_stream(self)
        self._flusher = asyncio.create_task(self._flush_loop(), name=f"flush-{self.alias}")

    def _serialize(self, records: list[Any]) -> bytes:
        """Validate every record (all before any is buffered) and encode them as one JSON array, in one call
        into pydantic's core: the bytes a request body splices in, with no dict per record on the way."""
        model = self.model
        models = records
        if not all(type(r) is model for r in records):
            models = []
            for record in records:
                try:
                    models.append(as_model(model, record))
                except ValidationError as exc:
                    raise RecordValidationError(self.alias, validation_message(exc), record) from exc
        return list_adapter(model).dump_json(models, by_alias=True)

    async def publish(self, record: ModelT | dict[str, Any]) -> None:
        """Validate and buffer one record; waits only when the buffer is full (backpressure)."""
        await self.publish_many([record])

    async def publish_many(
        self, records: Iterable[ModelT | dict[str, Any]], origins: Sequence[Origin | None] | None = None
    ) -> None:
        """Validate all the records (a bad one raises `RecordValidationError` and none is buffered), then buffer
        them in order. `origins`: the input position of each record (default: the current one, if any)."""
        if self.before_publish is not None:
            await self.before_publish()
        records = list(records)
        if records:
            if origins is not None and len(origins) != len(records):
                raise ValueError(f"publish_many: {len(records)} records but {len(origins)} origins")
            await self._buffer_records(self._serialize(records), len(records), origins)

    async def _buffer_records(self, json: bytes, count: int, origins: Sequence[Origin | None] | None) -> None:
        if self._flusher is None:
            raise RuntimeError(f"output {self.alias!r} is not open")
        if self._flusher.done():
            self._flusher.result()  # re-raise why the flusher died
        while self._buffered >= 4 * self.batch_size:
            self._space.clear()
            self._kick.set()
            await self._space.wait()
        if not self._buffered:
            self._first_at = time.monotonic()
        ticket = _Ticket(count)
        origin = current_origin() if origins is None else None
        self._buffer.append(_Part(_Records(json, count, ticket, origin, origins), 0, count))
        self._buffered += count
        track(ticket.future)
        self._kick.set()

    async def publish_binary(self, data: bytes) -> None:
        """One binary record (the stream's schema must be a single binary field); sent at once."""
        await self.flush()
        await self.client.request_json(
            "POST",
            stream_path(self.rid, self.branch, "/publishBinaryRecord", high_scale=True),
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
            if not self._buffered:
                continue
            wait = self._first_at + self.linger_s - time.monotonic()
            if self._buffered < self.batch_size and wait > 0 and not self._urgent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._until_full(), wait)
            chunk = self._take(self.batch_size)
            self._first_at = time.monotonic()
            if self._buffered:
                self._kick.set()
            else:
                self._urgent = False
            self._space.set()
            self._inflight = chunk
            try:
                await self._send(chunk)
            finally:
                self._inflight = []

    def _take(self, count: int) -> list[_Part]:
        """The first `count` records of the buffer (a call's records split where the count ends)."""
        chunk: list[_Part] = []
        while count and self._buffer:
            part = self._buffer[0]
            if part.count > count:
                part, self._buffer[0] = part.split(count)
            else:
                self._buffer.popleft()
            chunk.append(part)
            count -= part.count
            self._buffered -= part.count
        return chunk

    async def _until_full(self) -> None:
        while self._buffered < self.batch_size and not self._urgent:
            self._kick.clear()
            await self._kick.wait()

    async def _send(self, chunk: list[_Part]) -> None:
        """Publish `chunk` in one request; on a per-record rejection, each half again (recursion depth is
        log2 of the batch size, and order is kept since the halves go one after the other)."""
        try:
            await self._publish_records(b",".join([part.elements() for part in chunk]))
        except FoundryError as exc:
            if not rejects_the_record(exc):
                _fail(chunk, exc)
            elif len(chunk) == 1 and chunk[0].count == 1:
                await self._reject(chunk[0], exc)
            else:
                first, second = _halves(chunk)
                await self._send(first)
                await self._send(second)
            return
        except Exception as exc:
            _fail(chunk, exc)
            return
        self.metrics.records += sum(part.count for part in chunk)
        self.metrics.batches += 1
        _acknowledge(chunk)

    async def _publish_records(self, elements: bytes) -> None:
        """publishRecords into the view opened; after a reset of the stream, into its new view (logged once).
        `elements`: the records' JSON, comma-separated, spliced into the body as they are."""
        path = stream_path(self.rid, self.branch, "/publishRecords", high_scale=True)
        records = b'{"records":[' + elements + b"]"
        for _ in range(3):  # a stream reset again and again between two requests is an error, not a loop
            view = self.view_rid
            body = records + (b',"viewRid":' + dumps_bytes(view) if view else b"") + b"}"
            try:
                await self._post(path, body)
                return
            except FoundryError as exc:
                if not is_view_gone(exc):
                    raise
                await self.refresh_view()
        await self._post(path, records + b"}")

    async def _post(self, path: str, body: bytes) -> None:
        await self.client.request_json("POST", path, service="stream_proxy", data=body, headers=_JSON)

    async def _reject(self, part: _Part, exc: FoundryError) -> None:
        """One record the server refuses: to `on_rejected` (the dead letters), else its publish fails."""
        self.metrics.invalid += 1
        reason = f"rejected by stream {self.alias!r}: {exc.status} {exc.error_name}"
        ticket, payload, origin = part.records.ticket, part.payload(), part.origin()
        if self.on_rejected is None:
            ticket.fail(
                RecordValidationError(
                    self.alias,
                    f"{reason}; declare a DeadLetterOutput to keep such records and go on",
                    payload,
                    partition=origin.partition if origin else None,
                    offset=origin.offset if origin else None,
                )
            )
            return
        try:
            await self.on_rejected(payload, reason, origin)
        except Exception as dead_letter_exc:
            ticket.fail(dead_letter_exc)
            return
        ticket.done()

    def send_now(self) -> None:
        """Send what is buffered without waiting for the linger time (nor for the acknowledgements)."""
        if self._buffered:
            self._urgent = True
            self._kick.set()

    @property
    def pending(self) -> int:
        return self._buffered + sum(part.count for part in self._inflight)

    async def flush(self) -> None:
        """Send everything buffered now and wait until the server acknowledged it."""
        futures = [ticket.future for ticket in _tickets([*self._inflight, *self._buffer])]
        if self._buffered:
            self._urgent = True
            self._kick.set()
        if futures:
            await asyncio.gather(*futures)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flusher
        _fail(list(self._buffer), RuntimeError(f"output {self.alias!r} closed before the record was sent"))
        self._buffer.clear()
        self._buffered = 0


def _tickets(parts: Iterable[_Part]) -> list[_Ticket]:
    return list({id(p.records.ticket): p.records.ticket for p in parts}.values())


def _fail(chunk: list[_Part], exc: BaseException) -> None:
    for ticket in _tickets(chunk):
        ticket.fail(exc)


def _acknowledge(chunk: list[_Part]) -> None:
    """Count the chunk's records off their tickets: one call per part (a run of one `publish_many`'s records)."""
    for part in chunk:
        part.records.ticket.done(part.count)


def _halves(chunk: list[_Part]) -> tuple[list[_Part], list[_Part]]:
    """The chunk's records in two halves by count, a part split where the middle falls."""
    middle = sum(part.count for part in chunk) // 2
    first: list[_Part] = []
    for index, part in enumerate(chunk):
        if middle >= part.count:
            first.append(part)
            middle -= part.count
            continue
        if not middle:
            return first, chunk[index:]
        head, tail = part.split(middle)
        return [*first, head], [tail, *chunk[index + 1 :]]
    return first, []


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
