"""The hold point of `Windowed(..., checkpoint="reread")`: how far the input may be committed so that a restart,
which rebuilds the windows by re-reading the input from its committed position, rebuilds every window whole.

Each window (a key and a start) has, per input partition ("source/partition", a slot), the first and last
offset of its records: the records folded into it and the late records of its time (dead-lettered, so that a
re-read decides them again with the window's other records). A commit position vector P (per slot, the next offset a
restart reads) is valid when every window is either wholly before P (closed, every record below P in every
slot: never re-read) or wholly at or after P (re-read, so rebuilt whole); an open window must be after, and
so must a closed one until the record that closed it is acknowledged (its result was published with it).

The valid vectors are closed under the per-slot maximum, so there is a greatest one below any bound (what is
acknowledged): start at the bound lowered to each open window's first offsets, then lower every slot of a
closed window that still has a record at or after P to that window's first offsets, until nothing changes.
Closed windows wholly before the result are forgotten. Records only ever join windows at offsets past every
earlier position, so a valid vector stays valid as the input goes on and the hold point never goes back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .._errors import ConfigError

if TYPE_CHECKING:
    from .._streams.input import StreamInput

WindowId = tuple[str, int]  # (key, start ms)
Range = list[int]  # [first offset, last offset] of a window's records in one slot

#: A state this small has its hold point computed at every commit; a larger one once records amounting to an
#: eighth of its windows were added since (a stale hold point is still valid, only lower).
FRESH_BELOW = 4096


class Holds:
    """The input offsets each window's records hold, and the greatest commit vector keeping every window whole."""

    def __init__(self) -> None:
        self._ranges: dict[WindowId, dict[str, Range]] = {}
        self._closed: dict[str, set[WindowId]] = {}  # key -> its closed windows still held
        self._closers: dict[WindowId, tuple[str, int]] = {}  # closed window -> the record that closed it, until acked
        self._adds = 0
        self._cache: dict[str, tuple[int, dict[str, int], dict[str, int]]] = {}  # source -> (adds, bound, P)

    @property
    def size(self) -> int:
        """Windows held: the open ones and the closed ones some record of which a restart would re-read."""
        return len(self._ranges)

    def add(self, window: WindowId, slot: str, offset: int) -> None:
        """A record at `offset` of `slot` was folded into `window` (opened by it if new)."""
        self._adds += 1
        ranges = self._ranges.setdefault(window, {})
        span = ranges.get(slot)
        if span is None:
            ranges[slot] = [offset, offset]
        elif offset > span[1]:
            span[1] = offset
        closed = self._closed.get(window[0])
        if closed is not None and window in closed:  # a closed window opened again: open
            self._forget_closed(window)

    def fold(self, key: str, starts: list[int], every: list[int], slot: str, offset: int) -> None:
        """Fixed windows: a record folded into the windows `starts` of `key`, too late for the rest of `every`
        (closed already: they hold it too, so that a re-read decides it again with their records)."""
        if len(starts) < len(every):
            self.late(key, [s for s in every if s not in starts], slot, offset)
        for start in starts:
            self.add((key, start), slot, offset)

    def merge(self, windows: Iterable[WindowId], into: WindowId) -> None:
        """Sessions merged into `into`: it holds every record of theirs."""
        merged = self._ranges.setdefault(into, {})
        for window in windows:
            if window == into:
                continue
            for slot, (first, last) in self._ranges.pop(window, {}).items():
                span = merged.get(slot)
                merged[slot] = [first, last] if span is None else [min(first, span[0]), max(last, span[1])]

    def close(self, window: WindowId, slot: str, offset: int) -> None:
        """`window` was closed (and its result given) by the record at `offset` of `slot`."""
        if window not in self._ranges:
            return
        self._closed.setdefault(window[0], set()).add(window)
        self._closers[window] = (slot, offset)

    def late(self, key: str, starts: Iterable[int] | None, slot: str, offset: int) -> None:
        """A record too late for the closed windows of `key` at `starts` (None: every closed window of `key`, as
        for sessions) joins the ranges of those still held, so that a re-read decides it again with them."""
        closed = self._closed.get(key)
        if not closed:
            return
        for window in closed.copy() if starts is None else [(key, s) for s in starts if (key, s) in closed]:
            self._extend(window, slot, offset)

    def hold(self, source: str, bound: Mapping[str, int]) -> dict[str, int]:
        """The greatest valid commit vector (per slot, the next offset to read) at or below `bound`, which must
        hold every slot of every input: the acknowledged positions + 1 of `source`, the committed ones of any
        other source. Recomputed unless nothing changed (or a large state changed little: the last vector for
        `source`, still valid, is returned)."""
        cached = self._cache.get(source)
        if cached is not None:
            adds, last_bound, held = cached
            small = self.size < FRESH_BELOW or 8 * (self._adds - adds) >= self.size
            if (adds == self._adds and last_bound == bound) or not small:
                return held
        held = self._fixpoint(bound)
        self._cache[source] = (self._adds, dict(bound), held)
        return held

    def _fixpoint(self, bound: Mapping[str, int]) -> dict[str, int]:
        at = dict(bound)
        closed = {w for windows in self._closed.values() for w in windows}
        by_last: dict[str, list[tuple[int, WindowId]]] = {}
        kept: set[WindowId] = set()
        for window, ranges in self._ranges.items():
            if window not in closed:
                self._lower(at, window)  # open: re-read whole
                continue
            for slot, (_, last) in ranges.items():
                by_last.setdefault(slot, []).append((last, window))
        for window, (slot, offset) in list(self._closers.items()):
            if offset < bound.get(slot, 0):
                del self._closers[window]  # the record that closed it (and its result) is acknowledged
            else:
                kept.add(window)  # its result may not be published yet: re-read whole
                self._lower(at, window)
        for entries in by_last.values():
            entries.sort(reverse=True)
        done = dict.fromkeys(by_last, 0)
        work = list(by_last)
        while work:  # bounded: each (slot, closed window) entry is taken once; a slot is queued when P drops
            slot = work.pop()
            entries, i = by_last[slot], done[slot]
            while i < len(entries) and (slot not in at or entries[i][0] >= at[slot]):
                window = entries[i][1]
                i += 1
                if window not in kept:
                    kept.add(window)  # it has a record a restart re-reads: it must be re-read whole
                    work += [s for s in self._lower(at, window) if s in by_last]
            done[slot] = i
        for window in closed - kept:  # wholly before: never re-read again
            self._forget_closed(window)
            del self._ranges[window]
        return at

    def _lower(self, at: dict[str, int], window: WindowId) -> list[str]:
        """Lower `at` to `window`'s first offsets; the slots lowered."""
        lowered = []
        for slot, (first, _) in self._ranges[window].items():
            if first < at.get(slot, first + 1):
                at[slot] = first
                lowered.append(slot)
        return lowered

    def _extend(self, window: WindowId, slot: str, offset: int) -> None:
        ranges = self._ranges[window]
        span = ranges.get(slot)
        if span is None:
            ranges[slot] = [offset, offset]
        else:
            span[0], span[1] = min(span[0], offset), max(span[1], offset)

    def _forget_closed(self, window: WindowId) -> None:
        closed = self._closed.get(window[0])
        if closed is not None:
            closed.discard(window)
            if not closed:
                del self._closed[window[0]]


def bound_of(committed: Mapping[str, int], source: str, acked: Mapping[str, int]) -> dict[str, int]:
    """`Holds.hold`'s bound: every input's `committed` position (per slot), `source`'s raised to `acked` + 1."""
    bound = dict(committed)
    for partition, last in acked.items():
        slot = f"{source}/{partition}"
        bound[slot] = max(bound.get(slot, 0), last + 1)
    return bound


async def times_before(inputs: Mapping[str, StreamInput[Any]], time_of: Callable[[Any], int]) -> dict[str, int]:
    """Per slot, the event time (ms) of the record just before the committed position (one read each), None
    skipped: where a restart's watermark starts, so that records late before the restart mostly stay late."""
    found: dict[str, int] = {}
    for alias, handle in inputs.items():
        for partition, nxt in handle.committed.items():
            if nxt < 1:
                continue
            page = await handle.records_from(partition, nxt - 1, 1)
            try:
                found[f"{alias}/{partition}"] = time_of(handle.model.model_validate(page[0]["value"]))
            except (LookupError, TypeError, ValidationError, ConfigError):
                continue  # an invalid record, or none: that partition's watermark starts with the re-read
    return found
