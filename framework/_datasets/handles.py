"""Dataset inputs and outputs: Arrow tables in, Parquet files out."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeAlias, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ValidationError

from .._errors import (
    ConfigError,
    ConnectorError,
    NotFoundError,
    PermissionDeniedError,
    RecordValidationError,
    validation_message,
)
from .._handles import Handle, as_model, settle, track
from .._io import CHUNK_BYTES
from .api import DatasetFile, Transaction, dataset_path
from .arrow import schema_for, to_table
from .ipc import arrow_batches
from .schema import foundry_dataset_schema
from .transactions import DatasetTransaction, SchemaPublisher, open_transaction

M = TypeVar("M", bound=BaseModel)
Mode = Literal["append", "snapshot"]
Records: TypeAlias = pa.Table | Sequence[BaseModel | dict[str, Any]]
MiB = 1024 * 1024

__all__ = ["DatasetFile", "DatasetInput", "DatasetOutput", "DatasetTransaction", "Transaction"]


def _quiet(future: asyncio.Future[None]) -> None:
    """Mark a failure as retrieved: it is reported through `track()` and logs, not loop warnings."""
    future.add_done_callback(lambda f: f.cancelled() or f.exception())


class _DatasetReads(Handle):
    """Reads shared by inputs and outputs (a job may read what it wrote)."""

    kind = "dataset"

    def __init__(self, alias: str, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        super().__init__(alias)
        self.chunk_bytes = chunk_bytes

    def _table_params(self, columns: Sequence[str] | None, row_limit: int | None) -> dict[str, Any]:
        return {
            "format": "ARROW",
            "branchName": self.branch,
            "columns": list(columns) if columns else None,
            "rowLimit": row_limit,
        }

    async def check(self) -> None:
        """List one file page: proves the dataset and branch exist and the token may read them."""
        try:
            await self.client.request_json(
                "GET", dataset_path(self.rid, "files"), params={"branchName": self.branch, "pageSize": 1}
            )
        except (NotFoundError, PermissionDeniedError) as err:
            raise ConfigError(
                f"dataset {self.direction} {self.alias!r} ({self.rid}, branch {self.branch!r}) is not reachable: "
                f"{err.error_name}; check RESOURCE_ALIAS_MAP and that the job declares it"
            ) from err

    async def read_table(self, columns: Sequence[str] | None = None, row_limit: int | None = None) -> pa.Table:
        """The whole current view as one table (in memory: use `iter_batches` for large datasets).

        Decoded while it downloads, so the peak is about the table's size, not the table plus the body.
        """
        schema: list[pa.Schema] = []
        batches = [batch async for batch in self._batches(columns, row_limit, schema)]
        if not schema:
            return pa.table({})
        return pa.Table.from_batches(batches, schema=schema[0])

    async def iter_batches(
        self, columns: Sequence[str] | None = None, row_limit: int | None = None
    ) -> AsyncIterator[pa.RecordBatch]:
        """Stream the current view batch by batch: memory stays bounded whatever the dataset's size."""
        async for batch in self._batches(columns, row_limit):
            yield batch

    async def _batches(
        self, columns: Sequence[str] | None, row_limit: int | None, schema_sink: list[pa.Schema] | None = None
    ) -> AsyncIterator[pa.RecordBatch]:
        async with self.client.stream(
            "GET", dataset_path(self.rid, "readTable"), params=self._table_params(columns, row_limit)
        ) as resp:

            async def chunks() -> AsyncIterator[bytes]:
                async for chunk in resp.content.iter_chunked(self.chunk_bytes):
                    self.metrics.bytes += len(chunk)
                    yield chunk

            async for batch in arrow_batches(chunks(), schema_sink=schema_sink):
                self.metrics.records += batch.num_rows
                self.metrics.batches += 1
                yield batch

    async def read_models(
        self, model: type[M], columns: Sequence[str] | None = None, row_limit: int | None = None
    ) -> list[M]:
        """Rows as `model` instances; a row that does not validate raises RecordValidationError."""
        out: list[M] = []
        for row in (await self.read_table(columns, row_limit)).to_pylist():
            try:
                out.append(as_model(model, row))
            except ValidationError as exc:
                raise RecordValidationError(self.alias, validation_message(exc), row) from exc
        return out

    async def list_files(self, path_prefix: str | None = None, page_size: int = 1000) -> AsyncIterator[DatasetFile]:
        """Every file of the current view, following `nextPageToken`."""
        token: str | None = None
        while True:
            params = {"branchName": self.branch, "pathPrefix": path_prefix, "pageSize": page_size, "pageToken": token}
            page = await self.client.request_json("GET", dataset_path(self.rid, "files"), params=params)
            for item in page.get("data", []):
                yield DatasetFile.from_json(item)
            token = page.get("nextPageToken")
            if not token:
                return

    async def read_file(self, path: str) -> bytes:
        """One file's content, whole (use `open_file` for large files)."""
        data = await self.client.request_bytes(
            "GET", dataset_path(self.rid, "files", path, "content"), params={"branchName": self.branch}
        )
        self.metrics.bytes += len(data)
        return data

    async def open_file(self, path: str) -> AsyncIterator[bytes]:
        """One file's content in chunks of at most `chunk_bytes`, as it downloads."""
        async with self.client.stream(
            "GET", dataset_path(self.rid, "files", path, "content"), params={"branchName": self.branch}
        ) as resp:
            async for chunk in resp.content.iter_chunked(self.chunk_bytes):
                self.metrics.bytes += len(chunk)
                yield chunk


class DatasetInput(_DatasetReads):
    """A dataset the job reads: `read_table`, `iter_batches` (bounded memory), `read_models`, and files.

    Reads see the branch's current view (last SNAPSHOT plus later committed APPENDs); `check()` proves
    the dataset and branch are reachable without reading data.
    """

    direction = "input"


class DatasetOutput(_DatasetReads):
    """A dataset the job writes as Parquet files, only ever through transactions.

    Guarantees: a transaction commits only after every upload in it succeeded; a failure, cancellation or
    `close()` aborts it, so readers never see a half-written output. Large writes are split into Parquet
    files of about `max_file_bytes`, uploaded `max_concurrent_uploads` at a time. `append()` buffers rows
    and writes one APPEND transaction per flush (at `flush_rows`, `flush_bytes`, or `flush_interval_s` after
    the first buffered row); each call's ack resolves when its rows' transaction COMMITS, so a stream
    batch's offsets are committed only after its rows are durably in the dataset. A transaction left open
    by a killed earlier run is aborted (and logged) on the next open. One process writes a branch, or the
    workers of one (CONNECTOR_WORKERS): their transactions take turns, as Foundry keeps one open per branch.

    After a commit that wrote tables, the output puts the dataset schema (Foundry cannot read uploaded
    Parquet as a table without one) unless `put_schema=False`; only when it changed, and a failed put is
    logged and retried after the next commit, never failing rows that are already committed.
    """

    direction = "output"

    def __init__(
        self,
        alias: str,
        *,
        model: type[BaseModel] | None = None,
        schema: pa.Schema | None = None,
        mode: Mode = "append",
        prefix: str = "",
        max_file_bytes: int = 128 * MiB,
        row_group_rows: int = 1_000_000,
        compression: str = "snappy",
        max_concurrent_uploads: int = 4,
        flush_rows: int = 100_000,
        flush_bytes: int = 64 * MiB,
        flush_interval_s: float = 60.0,
        chunk_bytes: int = CHUNK_BYTES,
        put_schema: bool = True,
    ) -> None:
        super().__init__(alias, chunk_bytes=chunk_bytes)
        if mode not in ("append", "snapshot"):
            raise ConfigError(f"DatasetOutput({alias!r}) mode must be 'append' or 'snapshot', got {mode!r}")
        if min(max_file_bytes, row_group_rows, max_concurrent_uploads, flush_rows, flush_bytes) < 1:
            raise ConfigError(f"DatasetOutput({alias!r}) sizes and counts must be at least 1")
        if flush_interval_s <= 0:
            raise ConfigError(f"DatasetOutput({alias!r}) flush_interval_s must be positive")
        self.model = model
        self.schema = schema if schema is not None else (schema_for(model) if model is not None else None)
        self.put_schema = put_schema
        if put_schema and self.schema is not None:
            foundry_dataset_schema(self.schema)  # a column Foundry cannot type fails at declaration, not at run time
        self.mode: Mode = mode
        self.prefix = prefix
        self.max_file_bytes = max_file_bytes
        self.row_group_rows = row_group_rows
        self.compression = compression
        self.max_concurrent_uploads = max_concurrent_uploads
        self.flush_rows, self.flush_bytes, self.flush_interval_s = flush_rows, flush_bytes, flush_interval_s

    def _on_bind(self) -> None:
        self.upload_slots = asyncio.Semaphore(self.max_concurrent_uploads)
        self._tx_lock = asyncio.Lock()
        self._open_tx: DatasetTransaction | None = None
        self._buffer: list[pa.Table] = []
        self._acks: list[asyncio.Future[None]] = []
        self._buffer_rows = self._buffer_bytes = 0
        self._timer: asyncio.Task[None] | None = None
        self._flushing: asyncio.Task[None] | None = None
        self._failure: Exception | None = None  # a background flush's error, until reported
        self._flush_lock = asyncio.Lock()
        self._schemas = SchemaPublisher()

    @property
    def shared(self) -> bool:
        """One of several workers writing this branch: a transaction open on it may be a sibling's."""
        return self.binding.runtime.worker_index is not None

    def to_table(self, data: Records) -> pa.Table:
        """Records or a table -> a table with this output's schema (when declared)."""
        return to_table(data, model=self.model, schema=self.schema, alias=self.alias)

    # Transactions

    @asynccontextmanager
    async def transaction(self, mode: Mode | None = None) -> AsyncIterator[DatasetTransaction]:
        """Open a transaction; commit on clean exit, abort on error or cancellation."""
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        _quiet(ack)
        track(ack)
        async with self._transaction(mode or self.mode, [ack]) as tx:
            yield tx

    @asynccontextmanager
    async def _transaction(self, mode: Mode, acks: list[asyncio.Future[None]]) -> AsyncIterator[DatasetTransaction]:
        async with self._tx_lock:  # one open transaction per branch: ours are serialised here
            try:
                info = await open_transaction(self, "SNAPSHOT" if mode == "snapshot" else "APPEND")
            except BaseException as err:
                settle(acks, err)
                raise
            tx = self._open_tx = DatasetTransaction(self, info)
            try:
                yield tx
                if tx.closed:
                    raise ConnectorError(f"transaction {tx.rid} on {self.alias!r} was aborted before it could commit")
                await tx.commit()
            except BaseException as err:
                try:
                    await asyncio.shield(tx.abort())  # runs to the end even if we are cancelled again
                finally:
                    settle(acks, err)
                raise
            finally:
                self._open_tx = None
            settle(acks)  # the rows are committed: a schema put below must not delay or fail their acks
            if self.put_schema:
                await self._schemas.after_commit(self, tx, snapshot=mode == "snapshot")

    async def write_table(self, data: Records, *, mode: Mode | None = None) -> list[DatasetFile]:
        """Write `data` in one transaction (the output's `mode` unless given); returns the files written."""
        async with self.transaction(mode) as tx:
            return await tx.write_table(data)

    # Buffered appends

    @property
    def pending_rows(self) -> int:
        return self._buffer_rows

    async def append(self, records: Records) -> None:
        """Buffer rows for the next APPEND transaction; waits only when a full buffer must wait its turn."""
        self._raise_if_failed()
        table = self.to_table(records)  # invalid records fail here, before anything is buffered
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        _quiet(ack)
        track(ack)
        if table.num_rows == 0:
            # Nothing to write, but the ack must not overtake rows appended before it.
            if self._buffer_rows:
                self._acks.append(ack)
            elif self._flushing is not None and not self._flushing.done():
                self._flushing.add_done_callback(lambda t: settle([ack], None if t.cancelled() else t.exception()))
            else:
                ack.set_result(None)
            return
        self._buffer.append(table)
        self._acks.append(ack)
        self._buffer_rows += table.num_rows
        self._buffer_bytes += table.nbytes
        if self._buffer_rows >= self.flush_rows or self._buffer_bytes >= self.flush_bytes:
            await self._start_flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._flush_later(), context=contextvars.Context())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_interval_s)
        self._timer = None
        await self._start_flush()

    async def _start_flush(self) -> asyncio.Task[None] | None:
        """Hand the buffer to a background transaction; at most one is in flight (backpressure)."""
        async with self._flush_lock:
            if self._flushing is not None and not self._flushing.done():
                await asyncio.wait([self._flushing])
            if self._timer is not None and self._timer is not asyncio.current_task():
                self._timer.cancel()
            self._timer = None
            if not self._acks:
                return None
            tables, acks = self._buffer, self._acks
            self._buffer, self._acks, self._buffer_rows, self._buffer_bytes = [], [], 0, 0
            # A fresh context: the write must not join whichever input batch happened to trigger it.
            task = asyncio.create_task(self._write_buffered(tables, acks), context=contextvars.Context())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._flushing = task
            return task

    async def _write_buffered(self, tables: list[pa.Table], acks: list[asyncio.Future[None]]) -> None:
        rows = sum(t.num_rows for t in tables)
        try:
            table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
            async with self._transaction("append", acks) as tx:
                await tx.write_table(table)
        except BaseException as err:
            settle(acks, err)
            if isinstance(err, Exception):
                self.log.error("buffered append failed; its rows were not written", rows=rows, error=str(err))
                self._failure = err
            raise
        self.log.debug("buffered append committed", rows=rows, transaction=tx.rid)

    async def flush(self) -> None:
        """Write everything buffered now, and wait until its transaction committed.

        Raises if this or an earlier background flush failed and nobody was told yet: rows whose acks
        nobody awaited (a `run()` connector) must not vanish behind a clean exit.
        """
        task = await self._start_flush()
        if task is not None:
            with contextlib.suppress(Exception):
                await task
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        """Report a background flush's failure once, to the next caller of `append` or `flush`."""
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    async def close(self) -> None:
        """Abort what is not committed: buffered rows are dropped (their acks fail), open transactions aborted."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None and not self._flushing.done():
            self._flushing.cancel()
            await asyncio.wait([self._flushing])
        dropped = self._buffer_rows
        settle(self._acks, ConnectorError(f"output {self.alias!r} closed before its buffered rows were written"))
        self._buffer, self._acks, self._buffer_rows, self._buffer_bytes = [], [], 0, 0
        if dropped:
            self.log.warning("dropped unflushed rows on close", rows=dropped)
        if self._open_tx is not None:
            await self._open_tx.abort()
