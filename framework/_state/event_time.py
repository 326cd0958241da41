"""Drive event time in tests against the fake: publish records at chosen times, advance every watermark."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from .._streams.api import stream_path


class FakeFoundry(Protocol):
    """What these helpers use of `framework.testing.FakeFoundry` (a protocol: no import of the test module)."""

    async def publish(self, rid: str, records: list[dict[str, Any]], *, branch: str = "master") -> None: ...

    async def call(self, method: str, path: str, **kwargs: Any) -> Any: ...

    async def end_offsets(self, rid: str, *, branch: str = "master") -> dict[str, int]: ...


def _seconds(at: datetime | float) -> float:
    return at.timestamp() if isinstance(at, datetime) else float(at)


async def publish_at(
    foundry: FakeFoundry,
    rid: str,
    records: Sequence[Mapping[str, Any]],
    times: Sequence[datetime | float],
    *,
    field: str = "ts",
    branch: str = "master",
) -> None:
    """Publish `records[i]` with `field` set to `times[i]` (seconds since the epoch; a datetime is converted).

    Limits: as `FakeFoundry.publish` (admin, unvalidated); the fake spreads records of an unkeyed stream
    round robin over its partitions, so consecutive records land in consecutive partitions.
    """
    if len(records) != len(times):
        raise ValueError(f"publish_at: {len(records)} records but {len(times)} times")
    timed = [{**record, field: _seconds(at)} for record, at in zip(records, times, strict=True)]
    await foundry.publish(rid, timed, branch=branch)


async def stream_of(foundry: FakeFoundry, rid: str, *, branch: str = "master") -> dict[str, Any]:
    """The stream's description (`partitionsCount`, `schema` with its `keyFieldNames`)."""
    return dict(await foundry.call("GET", "/api" + stream_path(rid, branch)))


async def partitions_of(foundry: FakeFoundry, rid: str, *, branch: str = "master") -> int:
    """How many partitions the stream has."""
    return int((await stream_of(foundry, rid, branch=branch)).get("partitionsCount") or 1)


async def advance_watermark(
    foundry: FakeFoundry,
    rid: str,
    record: Mapping[str, Any],
    to: datetime | float,
    *,
    field: str = "ts",
    branch: str = "master",
) -> None:
    """Publish `record` at event time `to` to every partition of the stream.

    A windowed connector's watermark is the least of its partitions' latest times, so this moves it to `to`
    once the connector has read them: every window ending at or before `to` minus the grace period closes.
    An unkeyed stream gets `record` once per partition in one request (the fake spreads them round robin). A
    stream with key fields sends one key to one partition, so its first string key field is varied
    (`"<value>#0"`, `"<value>#1"`, ...) and the copies published one at a time until every partition got one
    (the end offsets say where each landed): a transform keyed on that field sees extra keys (filter on the
    prefix). Limits: a keyed stream needs a string key field in `record`; at most 64 copies per partition.
    """
    stream = await stream_of(foundry, rid, branch=branch)
    count = int(stream.get("partitionsCount") or 1)
    keys = list((stream.get("schema") or {}).get("keyFieldNames") or [])
    if not keys or count == 1:
        await publish_at(foundry, rid, [record] * count, [to] * count, field=field, branch=branch)
        return
    name = next((k for k in keys if isinstance(record.get(k), str)), None)
    if name is None:
        raise ValueError(f"advance_watermark: the stream is keyed by {keys}: give the record a string value for one")
    ends = await foundry.end_offsets(rid, branch=branch)
    reached: set[str] = set()
    for n in range(64 * count):
        await publish_at(foundry, rid, [{**record, name: f"{record[name]}#{n}"}], [to], field=field, branch=branch)
        now = await foundry.end_offsets(rid, branch=branch)
        reached |= {p for p, end in now.items() if end > ends.get(p, 0)}
        if len(reached) == count:
            return
        ends = now
    raise ValueError(f"advance_watermark: {64 * count} keys reached only partitions {sorted(reached)} of {count}")
