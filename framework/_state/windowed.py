"""`Windowed`: keyed event-time windows with a user's aggregate, checkpointed to a changelog stream."""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Generic, Literal

from .._errors import ConfigError
from .changelog import ChangelogEntry
from .checkpoint import Checkpoint, Position, StateHandle
from .reread import Holds, times_before
from .snapshot import Row
from .windows import A, Aggregate, Hopping, O, R, Session, WindowResult, event_time_ms

Changes = list[tuple[str, str | None]]
Emitted = list[tuple[str, int, Any, bool, int]]  # (key, start, accumulator, final, end) of each result

#: Re-read effects are pruned (below the committed offsets) every this many records.
PRUNE_EVERY = 1000


class Windowed(StateHandle, Generic[R, A, O]):
    """Keyed event-time windows: `minutes = Windowed("state", window=Tumbling(timedelta(minutes=1)),
    aggregate=Stats(), key="sensor", time="ts", grace=timedelta(seconds=30))`, then in a per-record
    `transform`: `for result in await self.minutes.add(record): ...`.

    `add(record)` folds the record into every window of its key holding its event time (`time`: a field name
    or a function; a datetime or seconds since the epoch), advances its partition's watermark (its latest
    event time), and returns the windows that closed: end + `grace` at or before the watermark, the least of
    every partition's (one with no record yet holds it back). `emit="update"` also returns each updated window
    (`final=False`). `window=Session(gap)`: a key's records less than `gap` apart form one session (a record
    bridging two merges them with `aggregate.merge`), closed once the watermark passes last event + `gap` +
    `grace`. A record too late for every window of its time is counted (`late`), logged, and sent to the
    `DeadLetterOutput` with its partition and offset: never dropped silently.

    Guarantees: the windows' state is exactly-once, results at-least-once (a window may be given twice,
    whole, around a crash, never partially). `checkpoint="changelog"` (the default): each `add` publishes one
    changelog entry within the input batch's ack tracking, replayed at start-up; a re-read record changes
    nothing and `add` returns again what it returned the first time. Call `add` once per record. With
    `snapshots` (a dataset) the whole state is written there every `snapshot_every` entries (or a timedelta)
    and only the changelog after the latest snapshot is replayed. `checkpoint="reread"`: no resource at all;
    the input's commits are held at the earliest record a window still needs (`framework._state.reread`), and
    a restart rebuilds the windows by re-reading from there: up to a window (+ grace) of input re-processed,
    windows given again whole, exact when records arrive within grace. Limits: more than `max_keys` windows
    (re-reading: open, or closed and still held) raises `StateLimitError`.
    """

    def __init__(
        self,
        alias: str,
        *,
        window: Hopping | Session,
        aggregate: Aggregate[R, A, O],
        key: str | Callable[[R], object],
        time: str | Callable[[R], object],
        grace: timedelta = timedelta(0),
        emit: Literal["close", "update"] = "close",
        max_keys: int = 1_000_000,
        snapshots: str | None = None,
        snapshot_every: int | timedelta = 100_000,
        checkpoint: Checkpoint = "changelog",
    ) -> None:
        super().__init__(
            alias, max_keys=max_keys, snapshots=snapshots, snapshot_every=snapshot_every, checkpoint=checkpoint
        )
        if grace < timedelta(0):
            raise ConfigError(f"Windowed({alias!r}): grace must not be negative, got {grace}")
        if emit not in ("close", "update"):
            raise ConfigError(f"Windowed({alias!r}): emit must be 'close' or 'update', got {emit!r}")
        if isinstance(window, Session) and type(aggregate).merge is Aggregate.merge:
            raise ConfigError(
                f"Windowed({alias!r}): Session windows merge sessions: define merge() on {type(aggregate).__name__}"
            )
        self.window, self.aggregate, self.emit = window, aggregate, emit
        self.grace_ms = round(grace.total_seconds() * 1000)
        self._key_of = key if callable(key) else (lambda r, f=key: getattr(r, f))
        self._time_of = time if callable(time) else (lambda r, f=time: getattr(r, f))

    def _on_bind(self) -> None:
        super()._on_bind()
        self._windows: dict[tuple[str, int], A] = {}
        self._ends: list[tuple[int, str, int]] = []  # heap of (end, key, start); a session's stale ends skipped
        self._lasts: dict[tuple[str, int], int] = {}  # sessions: (key, start) -> last event time
        self._sessions: dict[str, set[int]] = {}  # sessions: key -> starts of its open sessions
        self._watermarks: dict[str, int] = {}  # "source/partition" -> latest event time seen there
        self._missing: set[str] = set()  # partitions of a source seen that have no record yet
        self._applied: dict[str, int] = {}  # "source/partition" -> latest offset applied
        self._effects: dict[str, dict[int, str]] = {}  # slot -> offset -> what add returned (JSON), until committed
        self.late = 0
        self.closed = 0
        self.merged = 0  # sessions merged into another by a record between them
        self._adds = 0
        self._holds = Holds() if self.checkpoint == "reread" else None

    # Introspection.

    @property
    def size(self) -> int:
        """Open windows (re-reading: and the closed ones whose records the input is still held at)."""
        return len(self._windows) if self._holds is None else self._holds.size

    @property
    def watermark(self) -> int | None:
        """The least of every partition's latest event time (ms), None while a partition has none."""
        if self._missing:
            return None
        return min(self._watermarks.values()) if self._watermarks else None

    def _saw(self, slot: str, time_ms: int) -> None:
        """Advance `slot`'s watermark; the first time a source is seen, expect every partition of it."""
        if slot not in self._watermarks:
            source = slot.rpartition("/")[0]
            handle = self.inputs.get(source)
            if handle is not None and handle.info is not None:  # one of several workers: the partitions it reads
                owns = self.binding.runtime.owns
                expected = {f"{source}/{p}" for p in range(handle.info.partitions) if owns(p)}
                self._missing |= expected - set(self._watermarks)
            self._missing.discard(slot)
            self._watermarks[slot] = time_ms
        elif time_ms > self._watermarks[slot]:
            self._watermarks[slot] = time_ms

    def open_windows(self) -> dict[tuple[str, int], A]:
        """`{(key, start_ms): accumulator}` of every open window (a copy)."""
        return dict(self._windows)

    def applied(self) -> dict[str, int]:
        """`{"source/partition": latest offset applied}`: the input positions the state includes."""
        return dict(self._applied)

    # Processing.

    async def add(self, record: R, *, origin: tuple[str, int] | None = None) -> list[WindowResult[O]]:
        """Apply one input record (see the class); returns the windows closed (and updated, with emit="update")."""
        position = self._position(origin)
        source, partition, offset = position
        slot = f"{source}/{partition}"
        if self._applied.get(slot, -1) >= offset:
            self.skipped += 1
            return await self._again(slot, offset, record, position)
        self._adds += 1
        if self._adds % PRUNE_EVERY == 0:
            self._prune()
        with self._changing():
            results = await self._add(record, position, slot)
        await self._changed()
        return results

    async def _add(self, record: R, position: Position, slot: str) -> list[WindowResult[O]]:
        offset = position[2]
        time_ms = event_time_ms(self._time_of(record))
        key = str(self._key_of(record))
        watermark = self.watermark
        assign = self._assign_session if self._is_session else self._assign
        assigned = assign(record, key, time_ms, watermark, (slot, offset))
        if assigned is None:
            if self._holds is not None:  # sessions: every closed one of its key holds it
                starts = None if isinstance(self.window, Session) else self.window.starts(time_ms)
                self._holds.late(key, starts, slot, offset)
            await self._write(position, [], time_ms=time_ms, late=True)
            self._applied[slot] = offset
            self._effects.setdefault(slot, {})[offset] = "late"
            await self._late(record, position, time_ms, watermark)
            return []
        changes, emitted = assigned
        self._saw(slot, time_ms)
        for key_closed, start, acc, end in self._close():
            changes.append((self._name(key_closed, start), None))
            emitted.append((key_closed, start, acc, True, end))
            if self._holds is not None:
                self._holds.close((key_closed, start), slot, offset)
        self._forget_closed()
        effects = None
        if emitted:
            effects = json.dumps(
                [[k, start, acc.model_dump_json(), final, end] for k, start, acc, final, end in emitted]
            )
        await self._write(position, changes, time_ms=time_ms, effects=effects)
        self._applied[slot] = offset
        if effects is not None:
            self._effects.setdefault(slot, {})[offset] = effects
        return [self._result(k, start, acc, final=final, end=end) for k, start, acc, final, end in emitted]

    @property
    def _is_session(self) -> bool:
        return isinstance(self.window, Session)

    def _assign(
        self, record: R, key: str, time_ms: int, watermark: int | None, at: tuple[str, int]
    ) -> tuple[Changes, Emitted] | None:
        """Fixed windows: fold the record into each open window holding its time; None when all are closed."""
        assert isinstance(self.window, Hopping)
        size = self.window.size_ms
        every = self.window.starts(time_ms)
        starts = [s for s in every if watermark is None or s + size + self.grace_ms > watermark]
        if not starts:
            return None
        new = [s for s in starts if (key, s) not in self._windows]
        if new:
            self._check_limit(len(new))
        changes: Changes = []
        emitted: Emitted = []
        for start in starts:
            existing = self._windows.get((key, start))
            acc = self.aggregate.first(record) if existing is None else self.aggregate.add(existing, record)
            self._windows[(key, start)] = acc
            if existing is None:
                heapq.heappush(self._ends, (start + size, key, start))
            self._record_change(changes, key, start, acc)
            if self.emit == "update":
                emitted.append((key, start, acc, False, start + size))
        if self._holds is not None:
            self._holds.fold(key, starts, every, *at)
        return changes, emitted

    def _assign_session(
        self, record: R, key: str, time_ms: int, watermark: int | None, at: tuple[str, int]
    ) -> tuple[Changes, Emitted] | None:
        """Sessions: join, extend or merge the key's open sessions within `gap` of the record; start one when
        none is, unless it would be closed already (None: late)."""
        assert isinstance(self.window, Session)
        gap = self.window.gap_ms
        starts = self._sessions.get(key, set())
        hits = sorted(s for s in starts if s - gap < time_ms < self._lasts[(key, s)] + gap)
        if not hits:
            if watermark is not None and time_ms + gap + self.grace_ms <= watermark:
                return None
            self._check_limit(1)
        changes: Changes = []
        start, last = min([time_ms, *hits]), max([time_ms, *(self._lasts[(key, s)] for s in hits)])
        acc: A | None = None
        self.merged += max(0, len(hits) - 1)
        for s in hits:
            merged = self._windows.pop((key, s))
            acc = merged if acc is None else self.aggregate.merge(acc, merged)
            del self._lasts[(key, s)]
            starts.discard(s)
            if s != start:
                changes.append((self._name(key, s), None))
        acc = self.aggregate.first(record) if acc is None else self.aggregate.add(acc, record)
        self._windows[(key, start)], self._lasts[(key, start)] = acc, last
        if self._holds is not None:
            self._holds.merge([(key, s) for s in hits], (key, start))
            self._holds.add((key, start), *at)
        self._sessions.setdefault(key, set()).add(start)
        heapq.heappush(self._ends, (last + gap, key, start))
        self._record_change(changes, key, start, acc)
        emitted: Emitted = [(key, start, acc, False, last + gap)] if self.emit == "update" else []
        return changes, emitted

    def _name(self, key: str, start: int) -> str:
        return f"{start}|{key}"

    def _record_change(self, changes: Changes, key: str, start: int, acc: A) -> None:
        """A window's new value for the changelog entry; re-reading writes none, so nothing is encoded."""
        if self._holds is None:
            changes.append((self._name(key, start), self._encode(key, start, acc)))

    def _encode(self, key: str, start: int, acc: A) -> str:
        """A window's value in the changelog and snapshots: the accumulator; a session's is `last|accumulator`."""
        if self._is_session:
            return f"{self._lasts[(key, start)]}|{acc.model_dump_json()}"
        return acc.model_dump_json()

    def _end(self, key: str, start: int) -> int | None:
        """The open window's end (a session's: last event + gap), None when it is not open."""
        if (key, start) not in self._windows:
            return None
        if isinstance(self.window, Session):
            return self._lasts[(key, start)] + self.window.gap_ms
        return start + self.window.size_ms

    def _close(self) -> list[tuple[str, int, A, int]]:
        """Pop every window the watermark has passed (end + grace <= watermark), earliest end first."""
        watermark = self.watermark
        closed: list[tuple[str, int, A, int]] = []
        for _ in range(len(self._ends)):  # bounded: each turn pops one heap entry
            if watermark is None or not self._ends or self._ends[0][0] + self.grace_ms > watermark:
                break
            end, key, start = heapq.heappop(self._ends)
            if self._end(key, start) != end:  # closed already, or a session extended since (a later entry)
                continue
            closed.append((key, start, self._windows.pop((key, start)), end))
        self.closed += len(closed)
        return closed

    def _forget_closed(self) -> None:
        """Sessions: drop the closed ones from the per-key index; compact a heap grown with stale ends."""
        if not self._is_session:
            return
        for key, start in [k for k in self._lasts if k not in self._windows]:
            del self._lasts[(key, start)]
            starts = self._sessions.get(key)
            if starts is not None:
                starts.discard(start)
                if not starts:
                    del self._sessions[key]
        if len(self._ends) > 2 * len(self._windows) + 1000:
            self._rebuild_ends()

    def _rebuild_ends(self) -> None:
        self._ends = [(end, key, start) for key, start in self._windows if (end := self._end(key, start)) is not None]
        heapq.heapify(self._ends)

    def _result(self, key: str, start: int, acc: A, *, final: bool, end: int | None = None) -> WindowResult[O]:
        stop = end if end is not None else start + getattr(self.window, "size_ms", 0)
        return WindowResult(key, start, stop, self.aggregate.result(acc), final)

    async def _again(self, slot: str, offset: int, record: R, position: Position) -> list[WindowResult[O]]:
        """A re-read record: no state change; what it did the first time, again (it may not have been acked)."""
        effect = self._effects.get(slot, {}).get(offset)
        if effect is None:
            return []
        if effect == "late":
            await self._late(record, position, event_time_ms(self._time_of(record)), self.watermark)
            return []
        return [
            self._result(key, start, self.aggregate.decode(encoded), final=final, end=rest[0] if rest else None)
            for key, start, encoded, final, *rest in json.loads(effect)
        ]

    async def _late(self, record: R, position: Position, time_ms: int, watermark: int | None) -> None:
        source, partition, offset = position
        self.late += 1
        error = (
            f"late record: event time {time_ms} ms is over grace {self.grace_ms} ms behind the watermark {watermark}"
        )
        dead = self.dead_letters
        self.log.warning(
            "late record", state=self.alias, source=source, partition=partition, offset=offset, time_ms=time_ms,
            watermark=watermark, dead_letter=dead.alias if dead else None,
        )  # fmt: skip
        if dead is not None:
            await dead.send(source, error, record.model_dump(mode="json"), partition=partition, offset=offset)

    def _prune(self) -> None:
        """Forget what re-read records would return once their offsets are committed (never re-read now)."""
        for slot, effects in self._effects.items():
            committed = self._committed(slot)
            for offset in [o for o in effects if o < committed]:
                del effects[offset]

    async def _reread(self) -> dict[str, int]:
        """Each partition's watermark starts at the record before its committed position; the windows are rebuilt
        by `add` as the input is read again from there."""
        floors = await times_before(self.inputs, lambda r: event_time_ms(self._time_of(r)))
        for slot, time_ms in floors.items():
            self._saw(slot, time_ms)
        return floors

    # Restore.

    def _store(self, name: str, encoded: str | None) -> None:
        """Set (or with None delete) one window from its changelog or snapshot form."""
        start_text, _, key = name.partition("|")
        start = int(start_text)
        if encoded is None:
            self._windows.pop((key, start), None)
            if self._lasts.pop((key, start), None) is not None:
                self._sessions.get(key, set()).discard(start)
            return
        if self._is_session:
            last, _, encoded = encoded.partition("|")
            self._lasts[(key, start)] = int(last)
            self._sessions.setdefault(key, set()).add(start)
        self._windows[(key, start)] = self.aggregate.decode(encoded)

    def _apply(self, entry: ChangelogEntry) -> None:
        slot = f"{entry.source}/{entry.partition}"
        for name, encoded in entry.changed:
            self._store(name, encoded)
        if entry.time_ms is not None and not entry.late:
            self._saw(slot, entry.time_ms)
        self._applied[slot] = max(entry.offset, self._applied.get(slot, -1))
        if entry.late or entry.effects:
            self._effects.setdefault(slot, {})[entry.offset] = "late" if entry.late else str(entry.effects)

    def _keys(self, entry: ChangelogEntry) -> list[str]:
        """A window's value is set by its key's records; it is deleted (closed) by whichever record moved the
        watermark past it, of any partition of the worker that held it."""
        return [name.partition("|")[2] for name, value in entry.changed if value is not None]

    def _apply_foreign(self, entry: ChangelogEntry) -> None:
        """Another worker's record closed windows of keys that were in its share then and are in this one now."""
        for name, encoded in entry.changed:
            if encoded is None:
                self._store(name, None)

    def _restored(self) -> None:
        self._sessions = {k: s for k, s in self._sessions.items() if s}
        self._rebuild_ends()
        self._prune()

    # Snapshots: windows, watermarks, partitions not seen yet, positions applied, and what re-reads return.

    def snapshot_rows(self) -> list[Row]:
        rows: list[Row] = [("w", self._name(k, s), self._encode(k, s, acc)) for (k, s), acc in self._windows.items()]
        rows += [("m", slot, str(ms)) for slot, ms in self._watermarks.items()]
        rows += [("x", slot, "") for slot in self._missing]
        rows += [("a", slot, str(offset)) for slot, offset in self._applied.items()]
        rows += [("e", slot, json.dumps(effects)) for slot, effects in self._effects.items() if effects]
        return rows

    def _load_row(self, kind: str, key: str, value: str) -> None:
        if kind == "w":
            self._store(key, value)
        elif kind == "m":
            self._watermarks[key] = int(value)
        elif kind == "x":
            self._missing.add(key)
        elif kind == "a":
            self._applied[key] = int(value)
        elif kind == "e":
            self._effects[key] = {int(offset): str(effect) for offset, effect in json.loads(value).items()}

    def input_positions(self) -> dict[str, int]:
        return self.applied()
