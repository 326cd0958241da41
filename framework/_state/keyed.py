"""`KeyedState[M]`: a value per key that a transform reads and updates, checkpointed to a changelog stream."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Generic, cast, get_args

from pydantic import BaseModel

from .._errors import ConfigError
from .._handles import ModelT
from .changelog import ChangelogEntry
from .checkpoint import Checkpoint, Position, StateHandle
from .snapshot import Row

#: A deleted key's positions are kept (to skip its re-read updates) until they are all committed; checked every
#: this many writes.
PRUNE_EVERY = 10_000


class KeyedState(StateHandle, Generic[ModelT]):
    """A pydantic value per key, e.g. `totals = KeyedState[Total]("totals_state")` bound to a changelog stream.

    Use it from a per-record `transform` (or pass `origin=(partition, offset)` from `current_batch().origins`):
    `await self.totals.update(record.account, add_amount, default=Total)`.

    Guarantees: the state is exactly-once per key. Every `put`/`delete` is published to the changelog within
    the input batch's ack tracking (its offsets are committed only after the entry is acknowledged) with the
    record's position; after a crash the changelog is replayed at start-up, and a write to a key from a
    record whose position that key has already applied (a re-read record) is skipped: it returns False and
    changes nothing. So each input record is applied to each key at most once, ever, and at least once since
    its offset is committed only after its write is acknowledged; a second write to one key while processing
    one record is skipped too. Not guaranteed: what a transform publishes from state is at-least-once (a
    re-read record sees the state after itself). `get` is in memory. More than `max_keys` keys (deleted
    keys whose positions are not yet committed count) raises `StateLimitError`, which stops the connector.
    With `snapshots="totals_snapshots"` (a dataset output of the job) the whole state is written there every
    `snapshot_every` changes (or a timedelta), and a restore replays only the changelog after the latest one.
    """

    def __init__(
        self,
        alias: str,
        *,
        model: type[ModelT] | None = None,
        max_keys: int = 1_000_000,
        snapshots: str | None = None,
        snapshot_every: int | timedelta = 100_000,
        checkpoint: Checkpoint = "changelog",
    ) -> None:
        if checkpoint == "reread":
            raise ConfigError(
                f"KeyedState({alias!r}): checkpoint='reread' is for Windowed only (keyed state has no end, so no "
                "input to re-read could rebuild it): leave checkpoint at 'changelog'"
            )
        super().__init__(
            alias, max_keys=max_keys, snapshots=snapshots, snapshot_every=snapshot_every, checkpoint=checkpoint
        )
        self._model = model

    def _on_bind(self) -> None:
        super()._on_bind()
        self._values: dict[str, ModelT] = {}
        self._positions: dict[str, dict[str, int]] = {}  # key -> {"source/partition": offset applied}
        self._writes = 0

    @property
    def model(self) -> type[ModelT]:
        if self._model is None:
            args = get_args(getattr(self, "__orig_class__", None))
            if not args or not (isinstance(args[0], type) and issubclass(args[0], BaseModel)):
                raise ConfigError(
                    f"KeyedState({self.alias!r}) has no value model: declare it as KeyedState[MyModel]({self.alias!r})"
                )
            self._model = cast("type[ModelT]", args[0])
        return self._model

    async def check(self) -> None:
        self.model  # noqa: B018 - raises a ConfigError when the model is missing
        await super().check()

    # Reads: in memory.

    def get(self, key: str) -> ModelT | None:
        """The key's value, or None."""
        return self._values.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def items(self) -> Iterator[tuple[str, ModelT]]:
        return iter(list(self._values.items()))

    @property
    def size(self) -> int:
        return len(self._positions)

    def applied(self, key: str, *, origin: tuple[str, int] | None = None) -> bool:
        """Whether the record being processed (or `origin`) already changed `key`: True while re-reading."""
        source, partition, offset = self._position(origin)
        return self._positions.get(key, {}).get(f"{source}/{partition}", -1) >= offset

    # Writes: published to the changelog.

    async def put(
        self, key: str, value: ModelT | BaseModel | dict[str, object], *, origin: tuple[str, int] | None = None
    ) -> bool:
        """Set `key`; False (and no change) when this record's position was already applied to `key`."""
        model = self.model
        stored = value if isinstance(value, model) else model.model_validate(value, from_attributes=True)
        return await self._change(key, stored, self._position(origin))

    async def delete(self, key: str, *, origin: tuple[str, int] | None = None) -> bool:
        """Remove `key`; False when this record's position was already applied to `key`."""
        return await self._change(key, None, self._position(origin))

    async def update(
        self,
        key: str,
        change: Callable[[ModelT], ModelT],
        *,
        default: Callable[[], ModelT] | None = None,
        origin: tuple[str, int] | None = None,
    ) -> ModelT | None:
        """`put(key, change(current))`, the current value being `default()` for a new key (no default: no
        change of a missing key). Returns the value after; on a re-read record, the value unchanged."""
        position = self._position(origin)
        current = self._values.get(key)
        if current is None and default is not None:
            current = default()
        if current is None or self._seen(key, position):
            self.skipped += current is not None
            return current
        new = change(current)
        await self._change(key, new, position)
        return new

    def _seen(self, key: str, position: Position) -> bool:
        source, partition, offset = position
        return self._positions.get(key, {}).get(f"{source}/{partition}", -1) >= offset

    async def _change(self, key: str, value: ModelT | None, position: Position) -> bool:
        if self._seen(key, position):
            self.skipped += 1
            return False
        if key not in self._positions:
            self._check_limit(1)
        encoded = None if value is None else value.model_dump_json()
        with self._changing():
            await self._write(position, [(key, encoded)])
            self._set(key, value, position)
        self._writes += 1
        if self._writes % PRUNE_EVERY == 0:
            self._prune()
        await self._changed()
        return True

    def _set(self, key: str, value: ModelT | None, position: Position) -> None:
        source, partition, offset = position
        positions = self._positions.setdefault(key, {})
        slot = f"{source}/{partition}"
        positions[slot] = max(offset, positions.get(slot, -1))
        if value is None:
            self._values.pop(key, None)
        else:
            self._values[key] = value

    def _prune(self) -> None:
        """Forget deleted keys whose every position is committed: no re-read can reach them any more."""
        for key in [k for k in self._positions if k not in self._values]:
            if all(self._committed(slot) > offset for slot, offset in self._positions[key].items()):
                del self._positions[key]

    def _apply(self, entry: ChangelogEntry) -> None:
        position = (entry.source, entry.partition, entry.offset)
        for key, encoded in entry.changed:
            value = None if encoded is None else self.model.model_validate_json(encoded)
            self._set(key, value, position)

    def _keys(self, entry: ChangelogEntry) -> list[str]:
        return [key for key, _ in entry.changed]

    def _restored(self) -> None:
        self._prune()

    # Snapshots: one row per key held, with its value (null once deleted) and the positions applied to it.

    def snapshot_rows(self) -> Iterator[Row]:
        values = self._values
        for key, positions in list(self._positions.items()):
            value = values.get(key)
            encoded = None if value is None else value.model_dump_json()
            yield ("key", key, json.dumps([encoded, positions], separators=(",", ":")))

    def _load_row(self, kind: str, key: str, value: str) -> None:
        encoded, positions = json.loads(value)
        self._positions[key] = {str(slot): int(offset) for slot, offset in positions.items()}
        if encoded is not None:
            self._values[key] = self.model.model_validate_json(encoded)
