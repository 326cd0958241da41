"""Reads `Event`s from alias `events` and appends them to the dataset at alias `archive` as Parquet files.

Why: a stream is for the latest records; an archive dataset keeps every record, queryable as a table by
anything that reads datasets. The archiver is a two-line transform because the framework does the
hard part: `archive.append(records)` buffers rows, and its acknowledgement resolves only when the APPEND
transaction holding them has COMMITTED, which is what the batch's offset commit waits for.

Lifecycle: `archive` opens, then `events` (resuming at its subscriber's committed position) -> every batch
read is buffered by `archive.append` -> a flush writes the buffer as Parquet in ONE APPEND transaction when
ARCHIVER_FLUSH_ROWS rows or ARCHIVER_FLUSH_BYTES are buffered, ARCHIVER_FLUSH_INTERVAL_S after the first
buffered row, when the read-ahead window is full, and on shutdown -> once that transaction committed, the
offsets of every batch in it are committed, in read order.

Guarantees (at-least-once):
- A row becomes visible in the dataset only when its transaction commits; a failed upload or commit, a
  cancellation or a shutdown aborts the transaction, so readers never see half of a flush.
- Offsets are committed only after the rows read up to them are committed in the dataset. Killed at any
  point, the archiver loses nothing: the next run re-reads from the last committed offsets, so rows that
  were committed to the dataset but whose offsets were not are written again (de-duplicate on
  `stream_partition`, `stream_offset`).
- A transaction a killed run left OPEN on the branch is aborted (and logged) by the next run's first flush.
- A record that does not match `Event` is logged with its partition and offset and skipped.

Sizing: offsets wait for the flush, so rows per transaction are also bounded by the read-ahead window,
CONNECTOR_MAX_IN_FLIGHT_BATCHES x CONNECTOR_READ_BATCH_SIZE (4 x 500 by default): when it is full the
framework flushes early rather than stall. Raise both with ARCHIVER_FLUSH_ROWS for larger files.

Each row carries its source position (`stream_partition`, `stream_offset`): the duplicates at-least-once
allows after a kill are exact copies of a position, so downstream can de-duplicate on those two columns.

Run it: `connector run connectors.stream_archiver:StreamArchiver`
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from structlog.stdlib import BoundLogger

from framework import Connector, DatasetOutput, Environment, FoundryClient, StreamInput, current_batch


class Event(BaseModel):
    """One input record and one dataset row (the Parquet schema comes from this model, so it never drifts)."""

    id: int
    name: str
    value: float
    ts: datetime


class ArchivedEvent(Event):
    """A dataset row: the event and where it was read from."""

    stream_partition: str
    stream_offset: int


class ArchiverSettings(BaseSettings):
    """When to flush: whichever comes first. Defaults fill the default read-ahead window (4 x 500 rows)."""

    model_config = SettingsConfigDict(env_prefix="ARCHIVER_", extra="ignore")

    flush_rows: int = Field(2000, ge=1)
    flush_bytes: int = Field(64 * 1024 * 1024, ge=1)
    flush_interval_s: float = Field(60.0, gt=0)


class StreamArchiver(Connector):
    settings_model = ArchiverSettings  # read before any I/O: a bad value stops the connector with exit 2
    settings: ArchiverSettings
    events = StreamInput[Event]("events")
    archive = DatasetOutput("archive", model=ArchivedEvent, mode="append")

    def __init__(self, env: Environment, client: FoundryClient, log: BoundLogger | None = None) -> None:
        super().__init__(env, client, log)
        s = self.settings
        self.archive.configure(flush_rows=s.flush_rows, flush_bytes=s.flush_bytes, flush_interval_s=s.flush_interval_s)

    async def setup(self) -> None:
        runtime = self.env.runtime
        window = runtime.max_in_flight_batches * runtime.read_batch_size
        self.log.info("archiving", **self.settings.model_dump(), read_ahead_rows=window)
        if self.settings.flush_rows > window:
            self.log.warning(
                "ARCHIVER_FLUSH_ROWS exceeds the read-ahead window: transactions will hold about the window's rows",
                flush_rows=self.settings.flush_rows,
                read_ahead_rows=window,
                fix="raise CONNECTOR_MAX_IN_FLIGHT_BATCHES or CONNECTOR_READ_BATCH_SIZE",
            )

    async def transform_batch(self, records: list[Event]) -> None:
        # Returns at once (unless the previous flush is still committing: backpressure); the batch's offsets
        # are committed only when the transaction holding these rows has committed.
        batch = current_batch()
        assert batch is not None and batch.records is records
        await self.archive.append(
            [
                ArchivedEvent(**event.model_dump(), stream_partition=partition, stream_offset=offset)
                for event, (partition, offset) in zip(records, batch.origins, strict=True)
            ]
        )
