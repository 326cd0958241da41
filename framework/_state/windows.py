"""Event-time windows: assigners (tumbling, hopping, sliding, session), aggregates, and what a window gives.

Times are integer milliseconds since the epoch inside; a window is `[start, end)`: `end = start + size`, or
for a session `end = last event + gap`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from .._errors import ConfigError

R = TypeVar("R", bound=BaseModel)
A = TypeVar("A", bound=BaseModel)
O = TypeVar("O")  # noqa: E741 - the aggregate's result type

#: A record belongs to at most this many windows (size / hop): a bound on the work one record makes.
MAX_WINDOWS_PER_RECORD = 1000


def _ms(delta: timedelta) -> int:
    return round(delta.total_seconds() * 1000)


@dataclass(frozen=True)
class Hopping:
    """Windows of `size` starting every `hop` (a multiple of `hop` since the epoch): a record is in
    `size / hop` of them. `Tumbling` and `Sliding` are hopping windows too."""

    size: timedelta
    hop: timedelta

    def __post_init__(self) -> None:
        size, hop = _ms(self.size), _ms(self.hop)
        if size <= 0 or hop <= 0:
            raise ConfigError(f"{type(self).__name__}: size and hop must be positive, got {self.size} and {self.hop}")
        if hop > size:
            raise ConfigError(
                f"{type(self).__name__}: hop {self.hop} is longer than size {self.size} (records would fall between)"
            )
        if -(-size // hop) > MAX_WINDOWS_PER_RECORD:
            raise ConfigError(f"{type(self).__name__}: size / hop is over {MAX_WINDOWS_PER_RECORD} windows per record")

    @property
    def size_ms(self) -> int:
        return _ms(self.size)

    def starts(self, time_ms: int) -> list[int]:
        """The starts of every window holding `time_ms`, earliest first."""
        size, hop = self.size_ms, _ms(self.hop)
        last = time_ms - time_ms % hop
        first = last - ((size - 1) // hop) * hop
        return [s for s in range(first, last + 1, hop) if s + size > time_ms]


class Tumbling(Hopping):
    """Back-to-back windows of `size`: every record is in exactly one. `Tumbling(timedelta(minutes=1))`."""

    def __init__(self, size: timedelta) -> None:
        super().__init__(size, size)


class Sliding(Hopping):
    """Windows of `size` ending every `step` (default one second): the last `size` of event time, as seen
    every `step`. A hopping window with a small hop; a record is in `size / step` windows (at most 1000)."""

    def __init__(self, size: timedelta, step: timedelta = timedelta(seconds=1)) -> None:
        super().__init__(size, step)


@dataclass(frozen=True)
class Session:
    """Gap-based windows per key: a session holds records less than `gap` apart. A record within `gap` of two
    sessions of its key merges them (the aggregate needs `merge`). A session closes once the watermark passes
    its last event time + `gap` + the grace period; its result's end is its last event time + `gap`."""

    gap: timedelta

    def __post_init__(self) -> None:
        if _ms(self.gap) <= 0:
            raise ConfigError(f"Session: gap must be positive, got {self.gap}")

    @property
    def gap_ms(self) -> int:
        return _ms(self.gap)


class Aggregate(Generic[R, A, O]):
    """What a window computes: `add` folds a record into the accumulator (a pydantic model, since it is
    checkpointed), `result` turns it into what the window gives when it closes (or on every update).

    Define `accumulator`, `init` and `add` (and `result`, else the accumulator is the result; `merge` of two
    accumulators for `Session` windows, called when a record bridges two sessions). They run inside
    the transform, in order of the input per partition; they must be pure (deterministic, no I/O): after a
    crash the state is rebuilt from the changelog, not by calling them again.
    """

    accumulator: ClassVar[type[BaseModel]]

    def init(self) -> A:
        raise NotImplementedError

    def add(self, acc: A, record: R) -> A:
        raise NotImplementedError

    def first(self, record: R) -> A:
        """The accumulator of a window's first record: `add(init(), record)`."""
        return self.add(self.init(), record)

    def merge(self, first: A, second: A) -> A:
        """The accumulator of two sessions merged (`first` the earlier): only `Session` windows call it."""
        raise NotImplementedError

    def result(self, acc: A) -> O:
        return acc  # type: ignore[return-value]  # the default: the accumulator is the result

    def decode(self, encoded: str) -> A:
        return self.accumulator.model_validate_json(encoded)  # type: ignore[return-value]


class Reduce(Aggregate[R, R, R]):
    """An aggregate from `reduce(a, b) -> a record`: the window's first record is its accumulator."""

    def __init__(self, model: type[R], reduce: Callable[[R, R], R]) -> None:
        self.model, self.reduce = model, reduce

    def first(self, record: R) -> R:
        return record

    def add(self, acc: R, record: R) -> R:
        return self.reduce(acc, record)

    def merge(self, first: R, second: R) -> R:
        return self.reduce(first, second)

    def decode(self, encoded: str) -> R:
        return self.model.model_validate_json(encoded)


@dataclass(frozen=True)
class WindowResult(Generic[O]):
    """A window's result: `final` when it closed (the watermark passed its end plus the grace period), else an
    update (with `emit="update"`)."""

    key: str
    start_ms: int
    end_ms: int
    value: O
    final: bool = True

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.start_ms / 1000, UTC)

    @property
    def end(self) -> datetime:
        return datetime.fromtimestamp(self.end_ms / 1000, UTC)


def event_time_ms(value: Any) -> int:
    """Milliseconds since the epoch of a datetime (naive means UTC) or of a number of seconds."""
    if isinstance(value, datetime):
        return round((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp() * 1000)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(value * 1000)
    raise ConfigError(f"event time must be a datetime or seconds since the epoch, got {type(value).__name__}")
