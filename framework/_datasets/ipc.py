"""Arrow IPC streams decoded as they download, in bounded memory (readTable answers Arrow IPC)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from .._errors import ConnectorError
from .._io import CHUNK_BYTES


class BytePipe:
    """A bounded, thread-safe byte queue: the event loop writes HTTP chunks, a worker thread reads them.

    It lets pyarrow's blocking IPC reader consume a response as it arrives: at most about `max_bytes`
    (or the one message the reader is waiting for, if larger) is ever held here. The writer never blocks
    a thread: when the pipe is full it waits for `on_space`, which the reader calls after each read.
    """

    closed = False  # read by pyarrow.PythonFile
    received = 0  # bytes put so far, to tell an empty body from a broken one

    def __init__(self, max_bytes: int = 8 * CHUNK_BYTES, on_space: Callable[[], None] | None = None) -> None:
        self._on_space = on_space
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._size = 0  # bytes buffered and not yet read
        self._offset = 0  # read position in the first chunk (no copying of partly read chunks)
        self._max = max_bytes
        self._want = 0
        self._eof = False
        self._cancelled = False
        self._error: BaseException | None = None

    # Writer side (event loop): never blocks.

    def _has_room(self) -> bool:
        return self._size < max(self._max, self._want) or self._cancelled

    def try_put(self, chunk: bytes) -> bool:
        with self._cond:
            if not self._has_room():
                return False
            self._append(chunk)
            return True

    def _append(self, chunk: bytes) -> None:
        if not self._cancelled:
            self._chunks.append(chunk)
            self._size += len(chunk)
            self._cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        """End of the body; the reader sees EOF, or `error` if the download failed."""
        with self._cond:
            self._eof = True
            self._error = error
            self._cond.notify_all()

    def cancel(self) -> None:
        """The consumer is gone: unblock both sides and drop what is buffered."""
        with self._cond:
            self._cancelled = self._eof = True
            self._error = self._error or ConnectorError("stream cancelled")
            self._chunks.clear()
            self._size = self._offset = 0
            self._cond.notify_all()

    # Reader side (worker thread): file-like, as pyarrow.PythonFile expects.

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        with self._cond:
            self._want = n if n >= 0 else 1 << 62
            starved = self._size < self._want and not self._eof
        if starved and self._on_space is not None:
            self._on_space()  # the writer may be waiting for room that wanting more just made
        with self._cond:
            self._cond.wait_for(lambda: self._size >= self._want or self._eof)
            self._want = 0
            if self._error is not None and (self._cancelled or n < 0 or self._size < n):
                raise self._error
            out = bytearray()
            while self._chunks and (n < 0 or len(out) < n):
                head = self._chunks[0]
                take = len(head) - self._offset if n < 0 else min(len(head) - self._offset, n - len(out))
                out += memoryview(head)[self._offset : self._offset + take]
                self._offset += take
                if self._offset == len(head):
                    self._chunks.popleft()
                    self._offset = 0
            self._size -= len(out)
        if self._on_space is not None:
            self._on_space()
        return bytes(out)

    def close(self) -> None:
        pass


def _next_batch(reader: Any) -> Any:
    try:
        return reader.read_next_batch()
    except StopIteration:  # cannot cross a Future: signal the end with None
        return None


async def arrow_batches(
    chunks: AsyncIterable[bytes], max_buffer_bytes: int = 8 * CHUNK_BYTES, schema_sink: list[Any] | None = None
) -> AsyncIterator[Any]:
    """Decode an Arrow IPC stream as it downloads, one RecordBatch at a time, in bounded memory.

    pyarrow's reader blocks, so it runs on a thread of its own (never starving, or starved by, the shared
    executor). An empty body (what a dataset without files may answer) yields no batches. The stream's
    schema is appended to `schema_sink` when given, so an empty table keeps its columns.
    """
    loop = asyncio.get_running_loop()
    space = asyncio.Event()

    def on_space() -> None:
        with contextlib.suppress(RuntimeError):  # the loop may be closing while the thread finishes
            loop.call_soon_threadsafe(space.set)

    pipe = BytePipe(max_buffer_bytes, on_space)

    async def pump() -> None:
        try:
            async for chunk in chunks:
                pipe.received += len(chunk)
                while True:
                    space.clear()  # before trying: a read after a failed try sets it again
                    if pipe.try_put(chunk):
                        break
                    await space.wait()
        except BaseException as err:
            pipe.finish(err if isinstance(err, Exception) else ConnectorError("download cancelled"))
            raise
        pipe.finish()

    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arrow-ipc")
    pumping = asyncio.create_task(pump())
    try:
        try:
            reader = await loop.run_in_executor(worker, pa.ipc.open_stream, pa.PythonFile(pipe, mode="r"))
        except pa.ArrowInvalid:
            await pumping
            if pipe.received == 0:
                return
            raise
        if schema_sink is not None:
            schema_sink.append(reader.schema)
        while (batch := await loop.run_in_executor(worker, _next_batch, reader)) is not None:
            yield batch
        await pumping
    finally:
        pipe.cancel()
        if not pumping.done():
            pumping.cancel()
        await asyncio.gather(pumping, return_exceptions=True)
        worker.shutdown(wait=False)
