"""The changelog every state handle checkpoints to, its restore, and the base of the state handles.

A state handle (`KeyedState`, `Windowed`) keeps its state in memory and writes every change to a changelog
stream it is bound to (an output alias of the job, a stream of one partition with the `ChangelogEntry`
schema). Entries are published through the input batch's ack tracking, so the batch's offsets are committed
only once its changelog entries are acknowledged. Each entry names the input position (source, partition,
offset) whose processing made it: at start-up the changelog is read back in order, and a record re-read
after a crash whose position is already in the changelog does not change the state again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel

from .._errors import ConfigError, ConnectorError
from .._handles import Handle, current_origin
from .._streams.api import get_stream, stream_path
from .._streams.output import StreamOutput

if TYPE_CHECKING:
    from .._streams.dead_letters import DeadLetterOutput
    from .._streams.input import StreamInput
    from .._streams.output import _Pending

#: getRecords pages while restoring; the server may cap it lower (the fake and Foundry: 1000).
RESTORE_PAGE = 1000
#: A restore logs its progress every this many entries.
PROGRESS_EVERY = 100_000
#: Bounds a restore's loop: a changelog longer than this is refused rather than read forever.
MAX_RESTORE_PAGES = 10_000_000


class StateLimitError(ConnectorError):
    """A state handle would hold more keys than its `max_keys`. `str(err)` is one line saying what to do."""


class ChangelogEntry(BaseModel):
    """One input record's changes to one state handle: what the changelog stream holds.

    `changes` is JSON `[[key, value-or-null], ...]` (null deletes); `time_ms` the record's event time
    (windows: it advances its partition's watermark); `effects` JSON of what processing the record returned
    (windows closed, a late record) so a record re-read after a crash returns it again; `late` marks a
    record that was too late for any window.
    """

    source: str
    partition: str
    offset: int
    changes: str
    time_ms: int | None = None
    effects: str | None = None
    late: bool = False


class _ChangelogOutput(StreamOutput[ChangelogEntry]):
    """A stream output that stops publishing after a failed request: a changelog must stay a prefix of what
    was processed, or a restore would skip the records of a lost request after a later one was kept."""

    def _on_bind(self) -> None:
        super()._on_bind()
        self.broken: BaseException | None = None

    async def _send(self, chunk: list[_Pending]) -> None:
        if self.broken is not None:
            for pending in chunk:
                pending.ticket.fail(self.broken)
            return
        await super()._send(chunk)
        for pending in chunk:
            future = pending.ticket.future
            if future.done() and not future.cancelled() and future.exception():
                self.broken = future.exception()
                return


Position = tuple[str, str, int]  # (source alias, partition, offset)


class StateHandle(Handle):
    """The base of the state handles: binds a changelog output, restores it at start-up, publishes changes.

    Lifecycle (driven by the connector's driver): `open` (with the outputs: the changelog stream is opened)
    -> `restore` (after every input is open, before `setup()`: the changelog is read back, logged with the
    entries replayed and the time taken) -> the transform's calls -> `flush` -> `close`.
    Not thread-safe; one connector instance, one event loop.
    """

    direction: ClassVar[Literal["input", "output"]] = "output"
    kind: ClassVar[Literal["stream", "dataset", "media_set"]] = "stream"

    def __init__(self, alias: str, *, max_keys: int = 1_000_000) -> None:
        super().__init__(alias)
        if max_keys < 1:
            raise ConfigError(f"{type(self).__name__}({alias!r}): max_keys must be at least 1, got {max_keys}")
        self.max_keys = max_keys

    def _on_bind(self) -> None:
        self.changelog = _ChangelogOutput(self.alias, model=ChangelogEntry).bind(self.binding)
        self.inputs: dict[str, StreamInput[Any]] = {}
        self.dead_letters: DeadLetterOutput | None = None
        self.restored = 0  # changelog entries replayed at start-up
        self.skipped = 0  # state updates skipped because their input position was already applied

    async def check(self) -> None:
        await self.changelog.check()

    async def open(self) -> None:
        await self.changelog.open()
        info = self.changelog.info
        if info is not None and info.partitions != 1:
            raise ConfigError(
                f"state {self.alias!r}: its changelog stream has {info.partitions} partitions; it needs exactly one, "
                "so that the changelog's order is the order of the changes"
            )

    async def flush(self) -> None:
        await self.changelog.flush()

    async def close(self) -> None:
        await self.changelog.close()

    async def restore(self, inputs: Mapping[str, StreamInput[Any]], dead_letters: DeadLetterOutput | None) -> None:
        """Read the changelog back and apply it, logging progress; runs once, after every input opened.

        Guaranteed after it: the state is that of every entry the changelog holds, in order. Not covered:
        entries of a previous view of the changelog stream (a reset stream restores nothing).
        """
        self.inputs, self.dead_letters = dict(inputs), dead_letters
        started = time.monotonic()
        self.log.info("state restoring", alias=self.alias, rid=self.rid)
        async for entry in read_changelog(self):
            self._apply(entry)
            self.restored += 1
            if self.restored % PROGRESS_EVERY == 0:
                self.log.info("state restoring", alias=self.alias, entries=self.restored, keys=self.size)
                await asyncio.sleep(0)
        self._restored()
        seconds = round(time.monotonic() - started, 3)
        self.log.info("state restored", alias=self.alias, entries=self.restored, keys=self.size, seconds=seconds)

    # What a concrete handle defines.

    @property
    def size(self) -> int:
        """Keys held now (what `max_keys` bounds)."""
        raise NotImplementedError

    def _apply(self, entry: ChangelogEntry) -> None:
        """Apply one changelog entry while restoring."""
        raise NotImplementedError

    def _restored(self) -> None:
        """After the last entry was applied (rebuild indexes)."""

    # Helpers for the concrete handles.

    def _position(self, origin: tuple[str, int] | None) -> Position:
        """The input position being processed: `origin` (partition, offset) when given, else the record the
        driver is transforming (per-record `transform`). Without either there is nothing to make exactly-once."""
        current = current_origin()
        if origin is not None:
            return (current.source if current else "", str(origin[0]), int(origin[1]))
        if current is None or current.partition is None or current.offset is None:
            raise ConnectorError(
                f"state {self.alias!r} was used outside a per-record transform: pass origin=(partition, offset) "
                "(from framework.current_batch().origins in transform_batch)"
            )
        return (current.source, current.partition, current.offset)

    def _check_limit(self, adding: int) -> None:
        if self.size + adding > self.max_keys:
            raise StateLimitError(
                f"state {self.alias!r} would hold {self.size + adding} keys, over its max_keys={self.max_keys}: "
                f"raise max_keys, shorten windows or delete keys"
            )

    async def _write(self, position: Position, changes: Iterable[tuple[str, str | None]], **extra: Any) -> None:
        """Publish one entry (tracked by the input batch being processed, like any output)."""
        source, partition, offset = position
        body = json.dumps(list(changes), separators=(",", ":"))
        await self.changelog.publish(
            ChangelogEntry(source=source, partition=partition, offset=offset, changes=body, **extra)
        )


async def read_changelog(handle: Handle) -> AsyncIterator[ChangelogEntry]:
    """Every entry of the handle's changelog stream, in order (it has one partition)."""
    info = await get_stream(handle)
    path = stream_path(handle.rid, handle.branch, "/getRecords", high_scale=True)
    for partition in range(info.partitions):
        offset = 0
        for _ in range(MAX_RESTORE_PAGES):
            params: dict[str, str | int | bool | None] = {
                "partitionId": str(partition),
                "startOffset": offset,
                "limit": RESTORE_PAGE,
                "preview": True,
                "viewRid": info.view_rid or None,
            }
            page = await handle.client.request_json("GET", path, service="stream_proxy", params=params)
            if not page:
                break
            for record in page:
                yield ChangelogEntry.model_validate(record["value"])
            offset = int(page[-1]["offset"]) + 1
        else:
            raise ConnectorError(f"state {handle.alias!r}: changelog longer than {MAX_RESTORE_PAGES} pages")


async def restore_state(
    handles: Iterable[Handle], dead_letters: DeadLetterOutput | None, inputs: Iterable[Handle]
) -> None:
    """The driver's hook, after every handle opened and before `setup()`: restore every state handle."""
    from .._streams.input import StreamInput

    by_alias = {h.alias: h for h in inputs if isinstance(h, StreamInput)}
    for handle in handles:
        if isinstance(handle, StateHandle):
            await handle.restore(by_alias, dead_letters)
