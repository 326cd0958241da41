"""The changelog every state handle checkpoints to, its restore, and the base of the state handles.

A state handle (`KeyedState`, `Windowed`) keeps its state in memory and writes every change to a changelog
stream it is bound to (an output alias of the job, a stream of one partition with the `ChangelogEntry`
schema). Entries are published through the input batch's ack tracking, so the batch's offsets are committed
only once its changelog entries are acknowledged. Each entry names the input position (source, partition,
offset) whose processing made it: at start-up the changelog is read back in order, and a record re-read
after a crash whose position is already in the changelog does not change the state again.

Workers (CONNECTOR_WORKERS=N): each holds the state of the keys of its partitions (an input must have key
fields, so that a key's records are on one partition), publishes to the one shared changelog, and at start-up
replays only its partitions' entries (plus, for windows, another worker's closes of its windows), so any change
of N restores the same state; a key changed from two workers' partitions stops the start-up (`changelog.Split`).
Snapshots hold a whole state and are neither taken nor loaded by workers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from .._datasets.handles import DatasetOutput
from .._errors import ConfigError, ConnectorError
from .._handles import Binding, Handle, current_origin
from .._streams.output import StreamOutput
from .changelog import ChangelogEntry, Split, StopAfterFailure, read_changelog
from .reread import Holds, bound_of
from .snapshot import SCHEMA, Row, Snapshots, every_of

if TYPE_CHECKING:
    from .._http import FoundryClient
    from .._streams.dead_letters import DeadLetterOutput
    from .._streams.input import StreamInput

#: A restore logs its progress every this many entries.
PROGRESS_EVERY = 100_000


class StateLimitError(ConnectorError):
    """A state handle would hold more keys than its `max_keys`. `str(err)` is one line saying what to do."""


Position = tuple[str, str, int]  # (source alias, partition, offset)
Checkpoint = Literal["changelog", "reread"]


class StateHandle(Handle):
    """The base of the state handles: binds a changelog output, restores it at start-up, publishes changes.

    Lifecycle (driven by the connector's driver): `open` (with the outputs: the changelog stream is opened)
    -> `restore` (after every input is open, before `setup()`: the latest snapshot, when `snapshots` names a
    dataset, then the changelog after it, logged with the entries replayed and the time taken) -> the
    transform's calls (each change may start a snapshot, see `framework._state.snapshot`) -> `flush` -> `close`.
    Not thread-safe; one connector instance, one event loop.
    """

    direction: ClassVar[Literal["input", "output"]] = "output"
    kind: ClassVar[Literal["stream", "dataset", "media_set"]] = "stream"
    changelog: StreamOutput[ChangelogEntry]  # bound with checkpoint="changelog" only

    def __init__(
        self,
        alias: str,
        *,
        max_keys: int = 1_000_000,
        snapshots: str | None = None,
        snapshot_every: int | timedelta = 100_000,
        checkpoint: Checkpoint = "changelog",
    ) -> None:
        super().__init__(alias)
        name = f"{type(self).__name__}({alias!r})"
        if checkpoint not in ("changelog", "reread"):
            raise ConfigError(f"{name}: checkpoint must be 'changelog' or 'reread', got {checkpoint!r}")
        if checkpoint == "reread" and snapshots is not None:
            raise ConfigError(
                f"{name}: snapshots= needs checkpoint='changelog' (a re-read state has no changelog to shorten): "
                "drop one of them"
            )
        self.checkpoint = checkpoint
        if max_keys < 1:
            raise ConfigError(f"{type(self).__name__}({alias!r}): max_keys must be at least 1, got {max_keys}")
        if snapshots is not None and (not isinstance(snapshots, str) or not snapshots or snapshots == alias):
            raise ConfigError(f"{type(self).__name__}({alias!r}): snapshots must be a dataset alias of its own")
        every_of(alias, snapshot_every)
        self.max_keys = max_keys
        self.snapshot_alias, self.snapshot_every = snapshots, snapshot_every

    @property
    def resource(self) -> bool:
        return self.checkpoint == "changelog"

    def _on_bind(self) -> None:
        self.inputs: dict[str, StreamInput[Any]] = {}
        self.dead_letters: DeadLetterOutput | None = None
        self.restored = 0  # changelog entries replayed at start-up (after the snapshot, when there is one)
        self.restored_from: int | None = None  # the changelog offset of the snapshot restored, if any
        self.skipped = 0  # state updates skipped because their input position was already applied
        self._busy = 0  # changes under way (awaiting a publish): no snapshot is taken while one is
        self.snapshots: Snapshots | None = None
        self._guard: StopAfterFailure | None = None
        self._holds: Holds | None = None  # checkpoint="reread" (windows): the input offsets still needed
        if not self.resource:
            return
        binding = self.binding
        self._guard = StopAfterFailure(binding.client)
        guarded = Binding(
            binding.alias, binding.ref, cast("FoundryClient", self._guard), binding.runtime, binding.log,
            binding.connector_name, binding.metrics,
        )  # fmt: skip
        self.changelog = StreamOutput(self.alias, model=ChangelogEntry).bind(guarded)
        if self.snapshot_alias is not None and not self._shared:  # a snapshot holds the whole state, not a share
            alias = self.snapshot_alias
            ref = binding.client.env.ref(alias)
            output = DatasetOutput(alias, schema=SCHEMA, mode="snapshot").bind(
                Binding(
                    alias, ref, binding.client, binding.runtime, binding.log.bind(alias=alias), binding.connector_name
                )
            )
            self.snapshots = Snapshots(self, output, self.snapshot_every)

    @property
    def broken(self) -> BaseException | None:
        """Why the changelog stopped publishing (a failed request), or None."""
        return self._guard.broken if self._guard is not None else None

    async def check(self) -> None:
        if not self.resource:
            return
        await self.changelog.check()
        if self.snapshots is not None:
            await self.snapshots.output.check()

    async def open(self) -> None:
        if not self.resource:
            return
        await self.changelog.open()
        info = self.changelog.info
        if info is not None and info.partitions != 1:
            raise ConfigError(
                f"state {self.alias!r}: its changelog stream has {info.partitions} partitions; it needs exactly one, "
                "so that the changelog's order is the order of the changes"
            )

    async def flush(self) -> None:
        if self.resource:
            await self.changelog.flush()

    async def close(self) -> None:
        if not self.resource:
            return
        if self.snapshots is not None:
            await self.snapshots.close()
        await self.changelog.close()

    async def restore(self, inputs: Mapping[str, StreamInput[Any]], dead_letters: DeadLetterOutput | None) -> None:
        """Load the latest snapshot (if any) and replay the changelog after it, logging progress; runs once,
        after every input opened.

        Guaranteed after it: the state is that of every entry the changelog holds, in order. Not covered:
        entries of a previous view of the changelog stream (a reset stream restores nothing, and a snapshot
        taken before the reset is ignored).
        """
        self.inputs, self.dead_letters = dict(inputs), dead_letters
        if self._shared:
            self._check_keyed_inputs()
        if not self.resource:
            floors = await self._reread()
            self.log.info("state re-reading", alias=self.alias, positions=self.read_from(), watermarks=floors)
            return
        started = time.monotonic()
        self.log.info("state restoring", alias=self.alias, rid=self.rid, snapshots=self.snapshot_alias)
        if self.snapshot_alias is not None and self.snapshots is None:
            self.log.warning(
                "state snapshots off while workers share the state", alias=self.alias, snapshots=self.snapshot_alias,
                workers=self.binding.runtime.workers,
                detail="each worker replays its partitions' share of the whole changelog; one worker uses snapshots",
            )  # fmt: skip
        loaded = await self.snapshots.load() if self.snapshots is not None else None
        snapshot_keys = 0
        if loaded is not None:
            for kind, key, value in loaded.rows:
                self._load_row(kind, key, value)
            self.restored_from, snapshot_keys = loaded.offset, self.size
            self.log.info(
                "state snapshot loaded", alias=self.alias, changelog_offset=loaded.offset, rows=len(loaded.rows),
                keys=snapshot_keys, seconds=loaded.seconds,
            )  # fmt: skip
        split = Split(self.alias, self.binding.runtime, self._keys) if self._shared else None
        read = 0
        async for entry in read_changelog(self, start=self.restored_from or 0):
            read += 1
            if split is None or split.mine(entry):
                self._apply(entry)
                self.restored += 1
            else:
                self._apply_foreign(entry)
            if read % PROGRESS_EVERY == 0:
                self.log.info("state restoring", alias=self.alias, entries=self.restored, read=read, keys=self.size)
                await asyncio.sleep(0)
        self._restored()
        if self.snapshots is not None:
            self.snapshots.since = self.restored  # a long tail replayed: snapshot at the first change
        seconds = round(time.monotonic() - started, 3)
        self.log.info(
            "state restored", alias=self.alias, entries=self.restored, keys=self.size, seconds=seconds,
            snapshot=loaded is not None, snapshot_offset=self.restored_from, snapshot_keys=snapshot_keys,
            other_workers=read - self.restored,
        )  # fmt: skip

    @property
    def _shared(self) -> bool:
        """One of several workers (CONNECTOR_WORKERS > 1): this process holds its partitions' share of the state."""
        return self.binding.runtime.worker_index is not None

    def _check_keyed_inputs(self) -> None:
        """With several workers each keeps the state of its own partitions, which is whole only when every
        record of a key is on one partition: a stream with key fields (Foundry hashes a key to one partition)."""
        runtime = self.binding.runtime
        for alias, handle in self.inputs.items():
            info = handle.info
            if info is not None and info.partitions > 1 and not info.schema.get("keyFieldNames"):
                raise ConfigError(
                    f"CONNECTOR_WORKERS={runtime.workers}: state {self.alias!r} is split among workers by partition, "
                    f"but input {alias!r} has no key fields, so one key's records can be on any of its "
                    f"{info.partitions} partitions: give the stream key fields (keyFieldNames) or run one worker"
                )

    # What a concrete handle defines.

    def _keys(self, entry: ChangelogEntry) -> Iterable[str]:
        """The keys an entry's record changed as one of that key's records. With several workers, no key may be
        changed so from two workers' partitions: each worker holds the keys of its partitions."""
        raise NotImplementedError

    def _apply_foreign(self, entry: ChangelogEntry) -> None:
        """With several workers: what of another worker's entry applies here (by default nothing)."""

    @property
    def size(self) -> int:
        """Keys held now (what `max_keys` bounds)."""
        raise NotImplementedError

    def _apply(self, entry: ChangelogEntry) -> None:
        """Apply one changelog entry while restoring (again, on top of a snapshot that may include it)."""
        raise NotImplementedError

    def _restored(self) -> None:
        """After the last entry was applied (rebuild indexes)."""

    async def _reread(self) -> dict[str, int]:
        """checkpoint="reread": the start-up instead of a restore (the input is read again from its held
        position); returns the watermarks it starts from."""
        raise NotImplementedError

    def held(self, source: str, acked: Mapping[str, int]) -> dict[str, int] | None:
        """checkpoint="reread": per partition of input `source`, the last offset that may be committed given
        `acked` (its acknowledged last offsets): at most those, lower where a window still needs a record."""
        if self._holds is None:
            return None
        at = self._holds.hold(source, bound_of(self.read_from(), source, acked))
        return {p: min(last, at.get(f"{source}/{p}", last + 1) - 1) for p, last in acked.items()}

    def snapshot_rows(self) -> Iterable[Row]:
        """The whole state as `(kind, key, value)` strings (a copy: taken at once, written later)."""
        raise NotImplementedError

    def _load_row(self, kind: str, key: str, value: str) -> None:
        """Load one snapshot row while restoring (before the changelog's tail is replayed)."""
        raise NotImplementedError

    def input_positions(self) -> dict[str, Any]:
        """The input positions the state includes (recorded in a snapshot's meta row, for operators)."""
        return {}

    def quiescent(self) -> bool:
        """No change is half-applied (every change in memory is in the changelog's buffer, and back)."""
        return self._busy == 0

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

    def _committed(self, slot: str) -> int:
        """The committed position (next offset to read) of "source/partition"."""
        source, _, partition = slot.rpartition("/")
        handle = self.inputs.get(source)
        return handle.committed.get(partition, 0) if handle is not None else 0

    def read_from(self) -> dict[str, int]:
        """`{"source/partition": committed position}` of every input: where a restart reads from."""
        return {f"{alias}/{p}": nxt for alias, handle in self.inputs.items() for p, nxt in handle.committed.items()}

    def _check_limit(self, adding: int) -> None:
        if self.size + adding > self.max_keys:
            raise StateLimitError(
                f"state {self.alias!r} would hold {self.size + adding} keys, over its max_keys={self.max_keys}: "
                f"raise max_keys, shorten windows or delete keys"
            )

    @contextmanager
    def _changing(self) -> Iterator[None]:
        """Around one change of the state and its changelog publish: snapshots wait until it is whole."""
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1

    async def _changed(self) -> None:
        """After a whole change: a snapshot may start (when one is due and no other change is under way)."""
        if self.snapshots is not None:
            await self.snapshots.after_change(lambda: self.broken is not None)

    async def _write(self, position: Position, changes: Iterable[tuple[str, str | None]], **extra: Any) -> None:
        """Publish one entry (tracked by the input batch being processed, like any output); none when re-reading."""
        if not self.resource:
            return
        source, partition, offset = position
        body = json.dumps(list(changes), separators=(",", ":"))
        await self.changelog.publish(
            ChangelogEntry(source=source, partition=partition, offset=offset, changes=body, **extra)
        )


def holds_inputs(handles: Iterable[Handle]) -> bool:
    """Whether any state handle holds its input's commits (checkpoint="reread")."""
    return any(isinstance(h, StateHandle) and h.checkpoint == "reread" for h in handles)


def held_positions(handles: Iterable[Handle], source: str, acked: Mapping[str, int]) -> dict[str, int]:
    """The driver's commit of input `source`: its acknowledged last offsets `acked`, lowered by every hold."""
    positions = dict(acked)
    for handle in handles:
        held = handle.held(source, acked) if isinstance(handle, StateHandle) else None
        for partition, last in (held or {}).items():
            positions[partition] = min(positions.get(partition, last), last)
    return positions


async def restore_state(
    handles: Iterable[Handle], dead_letters: DeadLetterOutput | None, inputs: Iterable[Handle]
) -> None:
    """The driver's hook, after every handle opened and before `setup()`: restore every state handle."""
    from .._streams.input import StreamInput

    by_alias = {h.alias: h for h in inputs if isinstance(h, StreamInput)}
    for handle in handles:
        if isinstance(handle, StateHandle):
            await handle.restore(by_alias, dead_letters)
