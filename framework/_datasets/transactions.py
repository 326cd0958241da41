"""Dataset transactions: open (recovering a stale one), upload Parquet parts concurrently, commit or abort.

Guarantee: a transaction is committed only when every upload made in it succeeded; any failure,
cancellation or shutdown aborts it, so no reader ever sees a half-written output. After a commit that
wrote tables, `SchemaPublisher` puts the dataset schema Foundry needs to read them as a table.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from .._errors import ConfigError, ConflictError, ConnectorError, FoundryError
from .._io import Body, upload_body
from .api import DatasetFile, Transaction, dataset_path
from .schema import foundry_dataset_schema, table_schema

if TYPE_CHECKING:
    from structlog.stdlib import BoundLogger

    from .._handles import HandleMetrics
    from .._http import FoundryClient

TransactionType = Literal["APPEND", "UPDATE", "SNAPSHOT", "DELETE"]
Status = Literal["OPEN", "COMMITTED", "ABORTED"]


class DatasetOutput(Protocol):
    """What a transaction needs of the output it writes: its resource, its options and its upload slots.

    A protocol, so this module does not import the handles module that imports it (`handles.DatasetOutput`
    is the one implementation).
    """

    alias: str
    prefix: str
    put_schema: bool
    max_file_bytes: int
    row_group_rows: int
    compression: str
    upload_slots: asyncio.Semaphore

    @property
    def rid(self) -> str: ...
    @property
    def branch(self) -> str: ...
    @property
    def client(self) -> FoundryClient: ...
    @property
    def log(self) -> BoundLogger: ...
    @property
    def metrics(self) -> HandleMetrics: ...
    @property
    def shared(self) -> bool: ...
    def to_table(self, data: Any) -> pa.Table: ...


def part_name(prefix: str = "") -> str:
    """Unique and sortable by write time: `<prefix>part-20240102T030405123456Z-<uuid>.parquet`."""
    return f"{prefix}part-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex}.parquet"


def split_table(table: pa.Table, max_file_bytes: int) -> list[pa.Table]:
    """Zero-copy slices of about `max_file_bytes` of Arrow data each (Parquet files come out smaller)."""
    if table.num_rows == 0:
        return [table]
    per_row = max(1, table.nbytes // table.num_rows)
    rows = max(1, max_file_bytes // per_row)
    return [table.slice(start, rows) for start in range(0, table.num_rows, rows)]


def encode_parquet(table: pa.Table, row_group_rows: int, compression: str) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=row_group_rows, compression=compression)
    return sink.getvalue()


#: One of several workers waits this long for a sibling's open transaction on the branch before it aborts it as
#: left behind (the supervisor aborts those before any worker starts; this is the safety net).
SIBLING_WAIT_S = 300.0


async def open_transaction(out: DatasetOutput, type_: TransactionType) -> Transaction:
    """Create a transaction on the output's branch, where only one may be open at a time.

    One process: this output serialises its own, so an OPEN one found there was left behind by a killed earlier
    run and is aborted. One of several workers (CONNECTOR_WORKERS): it is a sibling worker's, so this waits
    for it to close (the supervisor aborted any left behind before starting the workers).
    """
    path = dataset_path(out.rid, "transactions")
    deadline = asyncio.get_running_loop().time() + SIBLING_WAIT_S
    aborted = 0
    while True:  # bounded: a retry follows a sibling's commit (until the deadline) or one of at most 2 aborts
        try:
            body = await out.client.request_json(
                "POST", path, params={"branchName": out.branch}, json={"transactionType": type_}
            )
            return Transaction.from_json(body)
        except ConflictError as err:
            if err.error_name != "OpenTransactionAlreadyExists" or aborted == 2:
                raise
            if out.shared and await _wait_closed(out, err, deadline):
                continue
            await _abort_open(out, err)
            aborted += 1


async def abort_left_open(out: DatasetOutput) -> None:
    """Abort the branch's latest transaction when it is OPEN: called when no writer of it can be running."""
    await _abort_open(out, None)


async def _open_rid(out: DatasetOutput, err: ConflictError | None) -> str | None:
    """The branch's open transaction: the one the conflict names, else the branch's latest. None when there is
    no conflict to explain and the branch has no transaction (or does not exist yet)."""
    named = err.parameters.get("transactionRid") if err is not None else None
    if isinstance(named, str):
        return named
    try:
        branch = await out.client.request_json("GET", dataset_path(out.rid, "branches", out.branch))
    except FoundryError as exc:
        if exc.status == 404 and err is None:
            return None
        raise
    latest = branch.get("transactionRid") if isinstance(branch, dict) else None
    if isinstance(latest, str):
        return latest
    if err is None:
        return None
    raise ConnectorError(
        f"dataset {out.rid} branch {out.branch!r} has an open transaction that could not be identified"
    ) from err


async def _wait_closed(out: DatasetOutput, err: ConflictError, deadline: float) -> bool:
    """Wait for a sibling worker's open transaction to close; False once `deadline` passed with it still open."""
    rid = await _open_rid(out, err)
    if rid is None:
        return True
    loop = asyncio.get_running_loop()
    pause = 0.02
    while loop.time() < deadline:
        tx = Transaction.from_json(await out.client.request_json("GET", dataset_path(out.rid, "transactions", rid)))
        if tx.status != "OPEN":
            return True
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)
    return False


async def _abort_open(out: DatasetOutput, err: ConflictError | None) -> None:
    stale = await _open_rid(out, err)
    if stale is None:
        return
    tx = Transaction.from_json(await out.client.request_json("GET", dataset_path(out.rid, "transactions", stale)))
    if tx.status == "OPEN":
        out.log.warning(
            "aborting stale open transaction", transaction=stale, branch=out.branch, created=str(tx.created_time)
        )
        await out.client.request_json("POST", dataset_path(out.rid, "transactions", stale, "abort"))


class DatasetTransaction:
    """An open transaction of a `DatasetOutput`; get one from `output.transaction(mode)`.

    Uploads run concurrently (bounded by the output's `max_concurrent_uploads`). If any upload fails the
    transaction is marked failed and will be aborted on exit even if the caller caught the error.
    """

    def __init__(self, out: DatasetOutput, info: Transaction) -> None:
        self.output = out
        self.info = info
        self.files: list[DatasetFile] = []
        self.table_schema: pa.Schema | None = None  # union of the tables written (None: raw files only)
        self.failed: BaseException | None = None
        self.closed = False
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def rid(self) -> str:
        return self.info.rid

    async def write_table(self, data: Any, *, prefix: str | None = None) -> list[DatasetFile]:
        """Write a table (or records) as one or more Parquet files; returns them once all are uploaded."""
        out = self.output
        table = out.to_table(data)
        if table.num_rows == 0 and self.info.transaction_type != "SNAPSHOT":
            return []
        if out.put_schema:  # before uploading: a table Foundry could not type aborts the transaction
            self.table_schema = table_schema(self.table_schema, table.schema)
        base = out.prefix if prefix is None else prefix
        parts = split_table(table, out.max_file_bytes)
        tasks = [asyncio.create_task(self._write_part(part, part_name(base))) for part in parts]
        try:
            files = list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        out.metrics.records += table.num_rows
        return files

    async def _write_part(self, part: pa.Table, path: str) -> DatasetFile:
        async with self.output.upload_slots:
            out = self.output
            data = await asyncio.to_thread(encode_parquet, part, out.row_group_rows, out.compression)
            return await self._upload(path, data)

    async def upload_file(self, path: str, body: Body) -> DatasetFile:
        """Upload one file (bytes, a local path, or an async iterable of bytes) into this transaction."""
        async with self.output.upload_slots:
            return await self._upload(path, body)

    async def _upload(self, path: str, body: Body) -> DatasetFile:
        if self.closed:
            raise ConnectorError(f"transaction {self.rid} is already {self.info.status.lower()}")
        out = self.output
        params = {"branchName": out.branch, "transactionRid": self.rid}
        self._inflight += 1
        self._idle.clear()
        try:
            result = await out.client.upload(
                "POST", dataset_path(out.rid, "files", path, "upload"), body=upload_body(body), params=params
            )
        except BaseException as err:
            self.failed = self.failed or err
            raise
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()
        file = DatasetFile.from_json(result) if isinstance(result, dict) else DatasetFile(path, self.rid, None, None)
        self.files.append(file)
        out.metrics.bytes += file.size_bytes or (len(body) if isinstance(body, bytes) else 0)
        return file

    async def commit(self) -> None:
        await self._idle.wait()  # uploads started in other tasks must land (or fail) first
        if self.failed is not None:
            raise ConnectorError(f"transaction {self.rid} had a failed upload; it was not committed") from self.failed
        body = await self.output.client.request_json(
            "POST", dataset_path(self.output.rid, "transactions", self.rid, "commit")
        )
        self.closed = True
        self.info = Transaction.from_json(body) if isinstance(body, dict) else self.info
        self.output.metrics.batches += 1
        self.output.log.debug("transaction committed", transaction=self.rid, files=len(self.files))

    async def abort(self) -> None:
        """Abort once; a failure to abort is logged (the server drops the transaction's files either way)."""
        if self.closed:
            return
        self.closed = True
        try:
            await self.output.client.request_json(
                "POST", dataset_path(self.output.rid, "transactions", self.rid, "abort")
            )
            self.info = Transaction(self.rid, self.info.transaction_type, "ABORTED", self.info.created_time, None)
            self.output.log.info("transaction aborted", transaction=self.rid)
        except Exception as err:  # the original failure matters more; a restart cleans up
            self.output.log.warning("transaction abort failed", transaction=self.rid, error=str(err))


class SchemaPublisher:
    """Per bound output: what it wrote since its last snapshot, and the schema Foundry last accepted from it.

    APPENDs extend the schema (a column missing from one flush must not vanish from the dataset's schema);
    a SNAPSHOT replaces it. The schema is put only when it differs from the last one put by this process.
    A failed put is logged, not raised: the rows are committed and their acks resolved, so failing would only
    make a stream re-read rows that are already in the dataset. The next commit that wrote tables retries it.
    """

    def __init__(self) -> None:
        self.written: pa.Schema | None = None
        self.put: dict[str, Any] | None = None

    async def after_commit(self, out: DatasetOutput, tx: DatasetTransaction, snapshot: bool) -> None:
        if tx.table_schema is None:  # raw files only: nothing Foundry could read as a table
            return
        old, new = self.written, tx.table_schema
        self.written = new if snapshot or old is None else self._extend(out, old, new)
        wanted = foundry_dataset_schema(self.written)
        if wanted == self.put:
            return
        body = {"schema": wanted, "branchName": out.branch, "dataframeReader": "PARQUET", "endTransactionRid": tx.rid}
        try:
            await out.client.request_json("PUT", dataset_path(out.rid, "putSchema"), json=body)
        except Exception as err:
            out.log.error(
                "putSchema failed: the committed rows are not readable as a table until a schema is put; "
                "it is retried after the next commit",
                transaction=tx.rid,
                error_name=err.error_name if isinstance(err, FoundryError) else type(err).__name__,
                error=str(err),
            )
            return
        self.put = wanted
        out.log.info("dataset schema put", transaction=tx.rid, columns=len(wanted["fieldSchemaList"]))

    @staticmethod
    def _extend(out: DatasetOutput, old: pa.Schema, new: pa.Schema) -> pa.Schema:
        """`old` plus `new`'s columns, types widened; where they cannot be, `new`'s type wins (never raises)."""
        try:
            merged = pa.unify_schemas([old, new], promote_options="permissive")
            foundry_dataset_schema(merged)  # e.g. two decimals can widen past precision 38
            return merged
        except (pa.ArrowInvalid, pa.ArrowTypeError, ConfigError) as err:
            out.log.warning(
                "column types changed since the last append; the schema follows the new ones", error=str(err)
            )
        kept = [new.field(f.name) if f.name in new.names else f for f in old]
        return pa.schema(kept + [f for f in new if f.name not in old.names])
