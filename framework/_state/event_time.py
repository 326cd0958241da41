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


async def partitions_of(foundry: FakeFoundry, rid: str, *, branch: str = "master") -> int:
    """How many partitions the stream has."""
    body = await foundry.call("GET", "/api" + stream_path(rid, branch))
    return int(body.get("partitionsCount") or 1)


async def advance_watermark(
    foundry: FakeFoundry,
    rid: str,
    record: Mapping[str, Any],
    to: datetime | float,
    *,
    field: str = "ts",
    branch: str = "master",
) -> None:
    """Publish `record` at event time `to` once to every partition of the (unkeyed) stream, in one request.

    A windowed connector's watermark is the least of its partitions' latest times, so this moves it to `to`
    once the connector has read them: every window ending at or before `to` minus the grace period closes.
    Limits: relies on the fake's round robin (a keyed stream sends one key to one partition only).
    """
    count = await partitions_of(foundry, rid, branch=branch)
    await publish_at(foundry, rid, [record] * count, [to] * count, field=field, branch=branch)
