"""Stream outputs over the Streams API v2: batched, ordered publishing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .._errors import BadRequestError, FoundryError, RecordValidationError, RequestTooLargeError, validation_message
from .._handles import ModelT, Origin, as_model, current_origin, list_adapter, track
from .._responses import dumps_bytes
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


@dataclass(slots=True)
class _Pending:
    """One buffered record: its JSON payload, its call's ticket, and the input position that produced it."""

    payload: dict[str, Any]
    ticket: _Ticket
    origin: Origin | None


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
        self._buffer: list[_Pending] = []
        self._first_at = 0.0
        self._kick = asyncio.Event()
        self._space = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._inflight: list[_Pending] = []
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

    def _serialize(self, records: list[Any]) -> list[dict[str, Any]]:
        """Validate every record (all before any is buffered) and dump them to JSON-ready dicts in one call."""
        model = self.model
        models = records
        if not all(type(r) is model for r in records):
            models = []
            for record in records:
                try:
                    models.append(as_model(model, record))
                except ValidationError as exc:
                    raise RecordValidationError(self.alias, validation_message(exc), record) from exc
        payloads: list[dict[str, Any]] = list_adapter(model).dump_python(models, mode="json", by_alias=True)
        return payloads

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
            await self._buffer_payloads(self._serialize(records), origins)

    async def _buffer_payloads(self, payloads: list[dict[str, Any]], origins: Sequence[Origin | None] | None) -> None:
        if self._flusher is None:
            raise RuntimeError(f"output {self.alias!r} is not open")
        if self._flusher.done():
            self._flusher.result()  # re-raise why the flusher died
        while len(self._buffer) >= 4 * self.batch_size:
            self._space.clear()
            self._kick.set()
            await self._space.wait()
        if not self._buffer:
            self._first_at = time.monotonic()
        ticket = _Ticket(len(payloads))
        if origins is None:
            origin = current_origin()
            self._buffer.extend([_Pending(p, ticket, origin) for p in payloads])
        else:
            self._buffer.extend([_Pending(p, ticket, o) for p, o in zip(payloads, origins, strict=True)])
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
            self._inflight = chunk
            try:
                await self._send(chunk)
            finally:
                self._inflight = []

    async def _until_full(self) -> None:
        while len(self._buffer) < self.batch_size and not self._urgent:
            self._kick.clear()
            await self._kick.wait()

    async def _send(self, chunk: list[_Pending]) -> None:
        """Publish `chunk` in one request; on a per-record rejection, each half again (recursion depth is
        log2 of the batch size, and order is kept since the halves go one after the other)."""
        try:
            await self._publish_records([p.payload for p in chunk])
        except FoundryError as exc:
            if not rejects_the_record(exc):
                _fail(chunk, exc)
            elif len(chunk) == 1:
                await self._reject(chunk[0], exc)
            else:
                middle = len(chunk) // 2
                await self._send(chunk[:middle])
                await self._send(chunk[middle:])
            return
        except Exception as exc:
            _fail(chunk, exc)
            return
        self.metrics.records += len(chunk)
        self.metrics.batches += 1
        _acknowledge(chunk)

    async def _publish_records(self, records: list[dict[str, Any]]) -> None:
        """publishRecords into the view opened; after a reset of the stream, into its new view (logged once)."""
        path = stream_path(self.rid, self.branch, "/publishRecords", high_scale=True)
        for _ in range(3):  # a stream reset again and again between two requests is an error, not a loop
            view = self.view_rid
            body: dict[str, Any] = {"records": records, **({"viewRid": view} if view else {})}
            try:
                await self._post_json(path, body)
                return
            except FoundryError as exc:
                if not is_view_gone(exc):
                    raise
                await self.refresh_view()
        await self._post_json(path, {"records": records})

    async def _post_json(self, path: str, body: dict[str, Any]) -> None:
        """The body serialised once, to bytes (in Rust), and sent as they are: aiohttp's `json=` would make a
        str of it and encode that again."""
        data = dumps_bytes(body)
        await self.client.request_json("POST", path, service="stream_proxy", data=data, headers=_JSON)

    async def _reject(self, pending: _Pending, exc: FoundryError) -> None:
        """One record the server refuses: to `on_rejected` (the dead letters), else its publish fails."""
        self.metrics.invalid += 1
        reason = f"rejected by stream {self.alias!r}: {exc.status} {exc.error_name}"
        if self.on_rejected is None:
            origin = pending.origin
            pending.ticket.fail(
                RecordValidationError(
                    self.alias,
                    f"{reason}; declare a DeadLetterOutput to keep such records and go on",
                    pending.payload,
                    partition=origin.partition if origin else None,
                    offset=origin.offset if origin else None,
                )
            )
            return
        try:
            await self.on_rejected(pending.payload, reason, pending.origin)
        except Exception as dead_letter_exc:
            pending.ticket.fail(dead_letter_exc)
            return
        pending.ticket.done()

    def send_now(self) -> None:
        """Send what is buffered without waiting for the linger time (nor for the acknowledgements)."""
        if self._buffer:
            self._urgent = True
            self._kick.set()

    @property
    def pending(self) -> int:
        return len(self._buffer) + len(self._inflight)

    async def flush(self) -> None:
        """Send everything buffered now and wait until the server acknowledged it."""
        futures = list({id(p.ticket): p.ticket.future for p in self._inflight + self._buffer}.values())
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
        _fail(self._buffer, RuntimeError(f"output {self.alias!r} closed before the record was sent"))
        self._buffer = []


def _fail(chunk: list[_Pending], exc: BaseException) -> None:
    for ticket in {id(p.ticket): p.ticket for p in chunk}.values():
        ticket.fail(exc)


def _acknowledge(chunk: list[_Pending]) -> None:
    """Count the chunk's records off their tickets: one call per run of records of one `publish_many`."""
    run_start = 0
    for i in range(1, len(chunk) + 1):
        if i == len(chunk) or chunk[i].ticket is not chunk[run_start].ticket:
            chunk[run_start].ticket.done(i - run_start)
            run_start = i


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
