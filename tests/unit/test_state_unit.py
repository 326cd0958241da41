"""State handles without a network: window assignment, closing on the watermark, late records, replay skips,
the size bound, and a restore from the entries a run wrote (the changelog stream replaced by a list)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel

from connectors.sensor_minutes import MinuteStats, Reading, Stats
from framework import (
    ChangelogEntry,
    ConfigError,
    FoundryClient,
    Hopping,
    KeyedState,
    Reduce,
    ResourceRef,
    Sliding,
    StateLimitError,
    Tumbling,
    Windowed,
)
from framework._env.environment import Environment
from framework._handles import Origin, origin_of
from framework.testing import bind_handle

REF = ResourceRef("ri.foundry.main.dataset.state", "master")


class Total(BaseModel):
    amount: int = 0


def bound(handle: Any, env: Environment, client: FoundryClient, log: list[ChangelogEntry]) -> Any:
    """Bound like a connector would, its changelog a list (`publish` appends), reading a 2-partition input."""
    h = bind_handle(handle, env, client, ref=REF)
    h.inputs = {"readings": SimpleNamespace(info=SimpleNamespace(partitions=2), committed={})}

    async def publish(entry: ChangelogEntry) -> None:
        log.append(entry)

    h.changelog.publish = publish
    return h


async def add(w: Windowed[Any, Any, Any], partition: str, offset: int, reading: Reading) -> list[Any]:
    with origin_of(Origin("readings", partition, offset)):
        return await w.add(reading)


def minutes(**options: Any) -> Windowed[Reading, MinuteStats, MinuteStats]:
    return Windowed(
        "state", window=Tumbling(timedelta(minutes=1)), aggregate=Stats(), key="sensor", time="ts", **options
    )


def test_window_assigners() -> None:
    assert Tumbling(timedelta(minutes=1)).starts(61_000) == [60_000]
    assert Hopping(timedelta(minutes=1), timedelta(seconds=30)).starts(61_000) == [30_000, 60_000]
    assert len(Sliding(timedelta(seconds=10)).starts(10_500)) == 10
    with pytest.raises(ConfigError, match="longer than size"):
        Hopping(timedelta(seconds=1), timedelta(seconds=2))
    with pytest.raises(ConfigError, match="windows per record"):
        Sliding(timedelta(hours=1), timedelta(milliseconds=1))


async def test_windows_close_on_the_least_partition_watermark_and_replays_are_skipped(
    env: Environment, client: FoundryClient
) -> None:
    log: list[ChangelogEntry] = []
    w = bound(minutes(grace=timedelta(seconds=10)), env, client, log)
    assert await add(w, "0", 0, Reading(sensor="a", ts=5, value=1)) == []
    assert await add(w, "0", 1, Reading(sensor="a", ts=75, value=2)) == []  # partition 1 unseen: no watermark
    assert await add(w, "1", 0, Reading(sensor="b", ts=69, value=3)) == []  # watermark 69 < 60 + 10
    (closed,) = await add(w, "1", 1, Reading(sensor="b", ts=80, value=4))  # watermark 75 >= 70
    assert (closed.key, closed.start_ms, closed.value.count, closed.final) == ("a", 0, 1, True)
    # A re-read record changes nothing and returns what it returned the first time.
    (again,) = await add(w, "1", 1, Reading(sensor="b", ts=80, value=4))
    assert again == closed and w.skipped == 1 and len(log) == 4
    # Late: its window closed already.
    assert await add(w, "0", 2, Reading(sensor="a", ts=1, value=9)) == []
    assert w.late == 1 and log[-1].late

    # Restored from the entries alone: the same windows, watermark and positions.
    restored = bound(minutes(grace=timedelta(seconds=10)), env, client, [])
    restored.inputs["readings"].committed = {"0": 1, "1": 1}  # what a restart resumes from
    for entry in log:
        restored._apply(entry)
    restored._restored()
    assert restored.open_windows() == w.open_windows()
    assert restored.watermark == w.watermark == 75_000
    assert restored.applied() == {"readings/0": 2, "readings/1": 1}
    assert await add(restored, "0", 1, Reading(sensor="a", ts=75, value=2)) == [] and restored.skipped == 1


async def test_emit_update_and_reduce(env: Environment, client: FoundryClient) -> None:
    class Peak(BaseModel):
        sensor: str
        ts: float
        value: float

    w = bound(
        Windowed(
            "state",
            window=Tumbling(timedelta(minutes=1)),
            aggregate=Reduce(Peak, lambda a, b: a if a.value >= b.value else b),
            key="sensor",
            time="ts",
            emit="update",
        ),
        env,
        client,
        [],
    )
    with origin_of(Origin("readings", "0", 0)):
        (first,) = await w.add(Peak(sensor="a", ts=1, value=5))
    with origin_of(Origin("readings", "0", 1)):
        (second,) = await w.add(Peak(sensor="a", ts=2, value=3))
    assert not first.final and second.value.value == 5


async def test_the_state_size_bound_is_a_one_line_error(env: Environment, client: FoundryClient) -> None:
    w = bound(minutes(max_keys=2), env, client, [])
    await add(w, "0", 0, Reading(sensor="a", ts=1, value=1))
    await add(w, "0", 1, Reading(sensor="b", ts=1, value=1))
    with pytest.raises(StateLimitError, match=r"would hold 3 keys, over its max_keys=2") as raised:
        await add(w, "0", 2, Reading(sensor="c", ts=1, value=1))
    assert "\n" not in str(raised.value)


async def test_keyed_state_is_exactly_once_per_key(env: Environment, client: FoundryClient) -> None:
    log: list[ChangelogEntry] = []
    totals = bound(KeyedState[Total]("state"), env, client, log)
    with origin_of(Origin("payments", "0", 7)):
        assert await totals.update("acct", lambda t: Total(amount=t.amount + 5), default=Total) == Total(amount=5)
        assert totals.applied("acct")
        # The same record again (a re-read): skipped.
        assert await totals.update("acct", lambda t: Total(amount=t.amount + 5), default=Total) == Total(amount=5)
        assert not await totals.put("acct", Total(amount=99))
    with origin_of(Origin("payments", "0", 8)):
        assert await totals.delete("acct")
    assert totals.get("acct") is None and len(log) == 2 and totals.skipped == 2
    restored = bound(KeyedState[Total]("state"), env, client, [])
    for entry in log:
        restored._apply(entry)
    with origin_of(Origin("payments", "0", 8)):
        assert restored.applied("acct")
    with pytest.raises(Exception, match="outside a per-record transform"):
        await totals.put("x", Total())
