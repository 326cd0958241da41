"""`Windowed`: keyed event-time windows with a user's aggregate, checkpointed to a changelog stream."""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Generic, Literal

from .._errors import ConfigError
from .checkpoint import ChangelogEntry, Position, StateHandle
from .windows import A, Aggregate, Hopping, O, R, WindowResult, event_time_ms

#: Re-read effects are pruned (below the committed offsets) every this many records.
PRUNE_EVERY = 1000


class Windowed(StateHandle, Generic[R, A, O]):
    """Keyed event-time windows: `minutes = Windowed("state", window=Tumbling(timedelta(minutes=1)),
    aggregate=Stats(), key="sensor", time="ts", grace=timedelta(seconds=30))`, then in a per-record
    `transform`: `for result in await self.minutes.add(record): ...`.

    `add(record)` folds the record into every window of its key holding its event time (`time`: a field
    name or a function; a datetime or seconds since the epoch), advances its partition's watermark (the
    latest event time seen in that partition), and returns the windows that closed: those whose end plus
    `grace` is at or before the watermark, the least of every partition's (a partition with no record yet
    holds it back; publish to every partition to advance it). With `emit="update"` it also returns each
    updated window (`final=False`).

    A record too late for every window of its time (each closed already) is never dropped silently: it is
    counted (`late`), logged, and sent to the connector's `DeadLetterOutput` with its partition and offset
    when one is declared.

    Guarantees: the windows' state is exactly-once. Each `add` publishes one changelog entry (the windows it
    changed and deleted, its position, its time) within the input batch's ack tracking, so offsets are
    committed only after it is acknowledged. At start-up the changelog is replayed; a record whose position is
    already applied (re-read after a crash) changes nothing, and `add` returns again what it returned the
    first time (the windows it closed, or it is dead-lettered again), so no result is lost whatever the crash.
    Results are at-least-once: a window may be given twice, whole, around a crash, never partially. Call
    `add` once per record: a second call for the same position is a re-read. Limits: more than `max_keys`
    open windows raises `StateLimitError`; every changelog entry is replayed at start-up (restore time grows
    with the changelog; see the README).
    """

    def __init__(
        self,
        alias: str,
        *,
        window: Hopping,
        aggregate: Aggregate[R, A, O],
        key: str | Callable[[R], object],
        time: str | Callable[[R], object],
        grace: timedelta = timedelta(0),
        emit: Literal["close", "update"] = "close",
        max_keys: int = 1_000_000,
    ) -> None:
        super().__init__(alias, max_keys=max_keys)
        if grace < timedelta(0):
            raise ConfigError(f"Windowed({alias!r}): grace must not be negative, got {grace}")
        if emit not in ("close", "update"):
            raise ConfigError(f"Windowed({alias!r}): emit must be 'close' or 'update', got {emit!r}")
        self.window, self.aggregate, self.emit = window, aggregate, emit
        self.grace_ms = round(grace.total_seconds() * 1000)
        self._key_of = key if callable(key) else (lambda r, f=key: getattr(r, f))
        self._time_of = time if callable(time) else (lambda r, f=time: getattr(r, f))

    def _on_bind(self) -> None:
        super()._on_bind()
        self._windows: dict[tuple[str, int], A] = {}
        self._ends: list[tuple[int, str, int]] = []  # heap of (end, key, start) of the open windows
        self._watermarks: dict[str, int] = {}  # "source/partition" -> latest event time seen there
        self._missing: set[str] = set()  # partitions of a source seen that have no record yet
        self._applied: dict[str, int] = {}  # "source/partition" -> latest offset applied
        self._effects: dict[str, dict[int, str]] = {}  # slot -> offset -> what add returned (JSON), until committed
        self.late = 0
        self.closed = 0
        self._adds = 0

    # Introspection.

    @property
    def size(self) -> int:
        return len(self._windows)

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
            if handle is not None and handle.info is not None:
                expected = {f"{source}/{p}" for p in range(handle.info.partitions)}
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
        time_ms = event_time_ms(self._time_of(record))
        key = str(self._key_of(record))
        watermark = self.watermark
        starts = [
            s
            for s in self.window.starts(time_ms)
            if watermark is None or s + self.window.size_ms + self.grace_ms > watermark
        ]
        if not starts:
            await self._write(position, [], time_ms=time_ms, late=True)
            self._applied[slot] = offset
            self._effects.setdefault(slot, {})[offset] = "late"
            await self._late(record, position, time_ms, watermark)
            return []
        new = [s for s in starts if (key, s) not in self._windows]
        if new:
            self._check_limit(len(new))
        changes: list[tuple[str, str | None]] = []
        emitted: list[tuple[str, int, A, bool]] = []
        for start in starts:
            existing = self._windows.get((key, start))
            acc = self.aggregate.first(record) if existing is None else self.aggregate.add(existing, record)
            self._windows[(key, start)] = acc
            if existing is None:
                heapq.heappush(self._ends, (start + self.window.size_ms, key, start))
            changes.append((f"{start}|{key}", acc.model_dump_json()))
            if self.emit == "update":
                emitted.append((key, start, acc, False))
        self._saw(slot, time_ms)
        for key_closed, start, acc in self._close():
            changes.append((f"{start}|{key_closed}", None))
            emitted.append((key_closed, start, acc, True))
        effects = None
        if emitted:
            effects = json.dumps([[k, start, acc.model_dump_json(), final] for k, start, acc, final in emitted])
        await self._write(position, changes, time_ms=time_ms, effects=effects)
        self._applied[slot] = offset
        if effects is not None:
            self._effects.setdefault(slot, {})[offset] = effects
        return [self._result(k, start, acc, final=final) for k, start, acc, final in emitted]

    def _close(self) -> list[tuple[str, int, A]]:
        """Pop every window the watermark has passed (end + grace <= watermark), earliest end first."""
        watermark = self.watermark
        closed: list[tuple[str, int, A]] = []
        while watermark is not None and self._ends and self._ends[0][0] + self.grace_ms <= watermark:
            _, key, start = heapq.heappop(self._ends)
            acc = self._windows.pop((key, start), None)
            if acc is not None:
                closed.append((key, start, acc))
        self.closed += len(closed)
        return closed

    def _result(self, key: str, start: int, acc: A, *, final: bool) -> WindowResult[O]:
        return WindowResult(key, start, start + self.window.size_ms, self.aggregate.result(acc), final)

    async def _again(self, slot: str, offset: int, record: R, position: Position) -> list[WindowResult[O]]:
        """A re-read record: no state change; what it did the first time, again (it may not have been acked)."""
        effect = self._effects.get(slot, {}).get(offset)
        if effect is None:
            return []
        if effect == "late":
            await self._late(record, position, event_time_ms(self._time_of(record)), self.watermark)
            return []
        return [
            self._result(key, start, self.aggregate.decode(encoded), final=final)
            for key, start, encoded, final in json.loads(effect)
        ]

    async def _late(self, record: R, position: Position, time_ms: int, watermark: int | None) -> None:
        source, partition, offset = position
        self.late += 1
        error = (
            f"late record: event time {time_ms} ms is over grace {self.grace_ms} ms behind the watermark {watermark}"
        )
        dead = self.dead_letters
        self.log.warning(
            "late record",
            state=self.alias,
            source=source,
            partition=partition,
            offset=offset,
            time_ms=time_ms,
            watermark=watermark,
            dead_letter=dead.alias if dead else None,
        )
        if dead is not None:
            await dead.send(source, error, record.model_dump(mode="json"), partition=partition, offset=offset)

    def _prune(self) -> None:
        """Forget what re-read records would return once their offsets are committed (never re-read now)."""
        for slot, effects in self._effects.items():
            source, _, partition = slot.rpartition("/")
            handle = self.inputs.get(source)
            committed = handle.committed.get(partition, 0) if handle is not None else 0
            for offset in [o for o in effects if o < committed]:
                del effects[offset]

    # Restore.

    def _apply(self, entry: ChangelogEntry) -> None:
        slot = f"{entry.source}/{entry.partition}"
        for name, encoded in json.loads(entry.changes):
            start_text, _, key = str(name).partition("|")
            if encoded is None:
                self._windows.pop((key, int(start_text)), None)
            else:
                self._windows[(key, int(start_text))] = self.aggregate.decode(encoded)
        if entry.time_ms is not None and not entry.late:
            self._saw(slot, entry.time_ms)
        self._applied[slot] = max(entry.offset, self._applied.get(slot, -1))
        if entry.late or entry.effects:
            self._effects.setdefault(slot, {})[entry.offset] = "late" if entry.late else str(entry.effects)

    def _restored(self) -> None:
        self._ends = [(start + self.window.size_ms, key, start) for key, start in self._windows]
        heapq.heapify(self._ends)
        self._prune()
