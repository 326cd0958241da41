"""Periodic snapshots of a state handle to a dataset, so that a restore replays only the changelog's tail.

A state handle declared with `snapshots="state_snapshots"` writes its whole state, every `snapshot_every`
changelog entries (or, given a timedelta, at the first change once that long passed since the last one), as
one SNAPSHOT transaction of that dataset: string rows `(kind, key, value)`, one of them the `meta` row
(JSON: the changelog offset the snapshot covers, the changelog's view, the input positions applied). The
dataset's current view is therefore the latest committed snapshot and nothing older.

Why it is exactly-once: the snapshot's `changelog_offset` is the changelog's end offset read *before* the
state was copied, so every entry below it is in the copy; entries at or above it may be in the copy too, and
replaying them again changes nothing (an entry sets whole values, and positions and watermarks only grow).
The transaction is written only after every changelog entry the copy includes was acknowledged, so the
changelog holds all of them and the replay never goes back in time. A process killed mid-snapshot leaves an
open transaction that nobody reads (the dataset's view is still the previous snapshot) and that the next
snapshot's `DatasetOutput` aborts. A snapshot that fails is logged and skipped: the changelog still has
everything, only the next restore is longer.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import pyarrow as pa
from structlog.stdlib import BoundLogger

from .._datasets.handles import DatasetOutput
from .._errors import ConfigError
from .._streams.api import stream_path
from .._streams.output import StreamOutput

SCHEMA = pa.schema([("kind", pa.string()), ("key", pa.string()), ("value", pa.string())])
META = "meta"
VERSION = 1

Row = tuple[str, str, str]  # (kind, key, value)


class Snapshotted(Protocol):
    """What a snapshot needs of its state handle (a protocol: `checkpoint` imports this module, not back)."""

    alias: str
    changelog: StreamOutput[Any]

    @property
    def log(self) -> BoundLogger: ...

    @property
    def size(self) -> int: ...

    def quiescent(self) -> bool: ...

    def snapshot_rows(self) -> Iterable[Row]: ...

    def input_positions(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Loaded:
    """A snapshot read back at restore: replay the changelog from `offset`."""

    offset: int
    rows: list[Row]
    seconds: float


def every_of(alias: str, every: int | timedelta) -> tuple[int | None, float | None]:
    """`snapshot_every` as (entries, seconds); a one-line ConfigError when it is not positive."""
    if isinstance(every, timedelta):
        if every <= timedelta(0):
            raise ConfigError(f"state {alias!r}: snapshot_every must be positive, got {every}")
        return None, every.total_seconds()
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"state {alias!r}: snapshot_every must be a number of entries >= 1 or a timedelta")
    return every, None


class Snapshots:
    """The snapshots of one bound state handle to its dataset output (`mode="snapshot"`).

    `after_change()` runs after each of the handle's changes, in the transform; at most one snapshot is
    being written at a time, in the background (its transaction holds no input commit).
    """

    def __init__(self, state: Snapshotted, output: DatasetOutput, every: int | timedelta) -> None:
        self.state, self.output = state, output
        self.every_entries, self.every_s = every_of(state.alias, every)
        self.since = 0  # changes since the last snapshot was started (or replayed at restore)
        self.last_at = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.written = 0
        self.failed = 0

    def due(self) -> bool:
        if self.since == 0 or (self.task is not None and not self.task.done()):
            return False
        if self.every_entries is not None:
            return self.since >= self.every_entries
        return time.monotonic() - self.last_at >= (self.every_s or 0.0)

    async def after_change(self, broken: Callable[[], bool]) -> None:
        """Start a snapshot when one is due and the state is consistent (no change half-applied)."""
        self.since += 1
        if not self.due() or broken() or not self.state.quiescent():
            return
        offset = await changelog_end(self.state.changelog)
        if broken() or not self.state.quiescent():  # another input's change is half-way: try at the next change
            return
        started = time.monotonic()
        rows = [self._meta(offset), *self.state.snapshot_rows()]
        self.since, self.last_at = 0, started
        # A fresh context: neither the flush nor the transaction joins the input batch being processed.
        self.task = asyncio.create_task(self._write(offset, rows, started), context=contextvars.Context())

    def _meta(self, offset: int) -> Row:
        meta = {
            "version": VERSION,
            "handle": type(self.state).__name__,
            "changelog_offset": offset,
            "changelog_view": self.state.changelog.view_rid or "",
            "inputs": self.state.input_positions(),
        }
        return (META, "", json.dumps(meta, separators=(",", ":")))

    async def _write(self, offset: int, rows: list[Row], started: float) -> None:
        log = self.state.log
        try:
            await self.state.changelog.flush()  # every entry in the copy is acknowledged before it may commit
            kinds, keys, values = (list(column) for column in zip(*rows, strict=True))
            table = pa.Table.from_arrays([pa.array(kinds), pa.array(keys), pa.array(values)], schema=SCHEMA)
            await self.output.write_table(table, mode="snapshot")
        except Exception as exc:
            self.failed += 1
            log.warning("state snapshot failed", alias=self.state.alias, error=f"{type(exc).__name__}: {exc}")
            return
        self.written += 1
        seconds = round(time.monotonic() - started, 3)
        log.info(
            "state snapshot written", alias=self.state.alias, rows=len(rows), changelog_offset=offset, seconds=seconds
        )

    async def load(self) -> Loaded | None:
        """The latest committed snapshot, or None (none yet, or of an earlier view of the changelog)."""
        started = time.monotonic()
        table = await self.output.read_table()
        if table.num_rows == 0:
            return None
        kinds, keys, values = (table.column(name).to_pylist() for name in ("kind", "key", "value"))
        meta: dict[str, Any] | None = None
        rows: list[Row] = []
        for kind, key, value in zip(kinds, keys, values, strict=True):
            if kind == META:
                meta = json.loads(value)
            else:
                rows.append((str(kind), str(key), str(value)))
        alias, name = self.state.alias, type(self.state).__name__
        if meta is None or meta.get("handle") != name:
            raise ConfigError(
                f"state {alias!r}: dataset {self.output.alias!r} holds no {name} snapshot; give each state "
                "handle its own snapshot dataset"
            )
        view = self.state.changelog.view_rid or ""
        if meta.get("changelog_view") and view and meta["changelog_view"] != view:
            self.state.log.warning("state snapshot ignored: the changelog stream was reset since", alias=alias)
            return None
        return Loaded(int(meta["changelog_offset"]), rows, round(time.monotonic() - started, 3))

    async def close(self) -> None:
        """Stop a snapshot being written (its transaction is aborted), then the output."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.wait([self.task])
        await self.output.close()


async def changelog_end(changelog: StreamOutput[Any]) -> int:
    """The changelog's end offset (one partition): the offset its next entry will get."""
    body = await changelog.client.request_json(
        "GET",
        stream_path(changelog.rid, changelog.branch, "/getEndOffsets", high_scale=True),
        service="stream_proxy",
        params={"preview": True},
    )
    return max((int(o) for o in (body or {}).values()), default=0)
