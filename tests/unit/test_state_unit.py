"""State handles without a network: window assignment, closing on the watermark, late records, replay skips,
the size bound, session windows, snapshot rows, and a restore from the entries a run wrote (the changelog stream
replaced by a list)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel

from connectors.sensor_minutes import MinuteStats, Reading, Stats
from framework import (
    Aggregate,
    ChangelogEntry,
    ConfigError,
    FoundryClient,
    Hopping,
    KeyedState,
    Reduce,
    ResourceRef,
    Session,
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


def sessions(**options: Any) -> Windowed[Reading, MinuteStats, MinuteStats]:
    return Windowed(
        "state", window=Session(timedelta(seconds=10)), aggregate=Stats(), key="sensor", time="ts", **options
    )


def replayed(handle: Any, env: Environment, client: FoundryClient, log: list[ChangelogEntry]) -> Any:
    """A fresh handle restored from `log` alone, as a restart would."""
    restored = bound(handle, env, client, [])
    for entry in log:
        restored._apply(entry)
    restored._restored()
    return restored


def from_snapshot(handle: Any, env: Environment, client: FoundryClient, rows: list[tuple[str, str, str]]) -> Any:
    """A fresh handle loaded from snapshot rows alone."""
    loaded = bound(handle, env, client, [])
    for kind, key, value in rows:
        loaded._load_row(kind, key, value)
    loaded._restored()
    return loaded


async def test_sessions_merge_when_a_record_bridges_two_and_close_after_last_event_gap_and_grace(
    env: Environment, client: FoundryClient
) -> None:
    log: list[ChangelogEntry] = []
    w = bound(sessions(grace=timedelta(seconds=5)), env, client, log)
    await add(w, "1", 0, Reading(sensor="z", ts=0, value=0))
    await add(w, "0", 0, Reading(sensor="a", ts=100, value=1))
    await add(w, "0", 1, Reading(sensor="a", ts=115, value=2))  # 15 s after: a second session
    assert set(w.open_windows()) == {("z", 0), ("a", 100_000), ("a", 115_000)}
    await add(w, "0", 2, Reading(sensor="a", ts=108, value=3))  # within 10 s of both: they merge
    assert set(w.open_windows()) == {("z", 0), ("a", 100_000)}
    merged = w.open_windows()[("a", 100_000)]
    assert (merged.count, merged.total, merged.low, merged.high) == (3, 6.0, 1.0, 3.0)
    # Watermark 115: z (last 0, gap 10, grace 5) closes; a (last 115) stays open.
    (z,) = await add(w, "1", 1, Reading(sensor="b", ts=119, value=0))
    assert (z.key, z.start_ms, z.end_ms, z.final) == ("z", 0, 10_000, True)
    assert await add(w, "0", 3, Reading(sensor="c", ts=140, value=0)) == []  # watermark 119
    # Watermark 131 >= a's 115 + 10 + 5; c's earlier reading joins its session (131 is within 10 s of 140).
    (a,) = await add(w, "1", 2, Reading(sensor="c", ts=131, value=0))
    assert (a.key, a.start_ms, a.end_ms, a.value.count, a.value.total) == ("a", 100_000, 125_000, 3, 6.0)
    # A reading of no open session whose own session would be closed already is late ...
    assert await add(w, "0", 4, Reading(sensor="d", ts=100, value=1)) == [] and w.late == 1 and log[-1].late
    # ... but an old reading within the gap of an open session joins it (and moves its start).
    await add(w, "0", 5, Reading(sensor="b", ts=112, value=1))
    assert set(w.open_windows()) == {("b", 112_000), ("c", 131_000)}
    # A re-read record returns again what it returned the first time.
    (again,) = await add(w, "1", 2, Reading(sensor="c", ts=131, value=0))
    assert again == a

    rows = list(w.snapshot_rows())
    grace = timedelta(seconds=5)
    for other in (
        replayed(sessions(grace=grace), env, client, log),
        from_snapshot(sessions(grace=grace), env, client, rows),
    ):
        assert other.open_windows() == w.open_windows()
        assert other.watermark == w.watermark == 131_000 and other.applied() == w.applied()
        # The sessions index came back too: a bridging reading still merges, the watermark still closes.
        await add(other, "0", 6, Reading(sensor="b", ts=125, value=1))
        assert set(other.open_windows()) == {("b", 112_000), ("c", 131_000)}
        (b,) = await add(other, "1", 3, Reading(sensor="e", ts=151, value=0))
        assert (b.key, b.start_ms, b.end_ms, b.value.count) == ("b", 112_000, 135_000, 3)


def test_session_windows_need_an_aggregate_that_merges() -> None:
    class Count(Aggregate[Reading, Total, Total]):
        accumulator = Total

        def init(self) -> Total:
            return Total()

        def add(self, acc: Total, record: Reading) -> Total:
            return Total(amount=acc.amount + 1)

    with pytest.raises(ConfigError, match=r"define merge\(\) on Count"):
        Windowed("state", window=Session(timedelta(seconds=1)), aggregate=Count(), key="sensor", time="ts")
    with pytest.raises(ConfigError, match="gap must be positive"):
        Session(timedelta(0))
    with pytest.raises(ConfigError, match="snapshot_every must be"):
        minutes(snapshots="snaps", snapshot_every=0)
    with pytest.raises(ConfigError, match="a dataset alias of its own"):
        minutes(snapshots="state")


async def test_a_snapshot_and_a_replay_over_it_give_the_state_of_the_whole_changelog(
    env: Environment, client: FoundryClient
) -> None:
    log: list[ChangelogEntry] = []
    w = bound(minutes(grace=timedelta(seconds=10)), env, client, log)
    totals = bound(KeyedState[Total]("state"), env, client, [])
    for i in range(40):
        await add(w, str(i % 2), i // 2, Reading(sensor=f"s{i % 3}", ts=i * 7, value=i))
        with origin_of(Origin("payments", "0", i)):
            await totals.update(f"k{i % 5}", lambda t, i=i: Total(amount=t.amount + i), default=Total)
            if i == 38:
                await totals.delete("k0")
    # A snapshot taken after entry 25, then every entry from 20 on replayed over it (an overlap: no change).
    early = bound(minutes(grace=timedelta(seconds=10)), env, client, [])
    for entry in log[:25]:
        early._apply(entry)
    early._restored()
    restored = from_snapshot(minutes(grace=timedelta(seconds=10)), env, client, list(early.snapshot_rows()))
    for entry in log[20:]:
        restored._apply(entry)
    restored._restored()
    assert restored.open_windows() == w.open_windows() and restored.watermark == w.watermark
    assert restored.applied() == w.applied() and restored._effects == w._effects

    keyed = from_snapshot(KeyedState[Total]("state"), env, client, list(totals.snapshot_rows()))
    assert dict(keyed.items()) == dict(totals.items()) and "k0" not in keyed
    with origin_of(Origin("payments", "0", 38)):
        assert keyed.applied("k0") and not keyed.applied("new")


async def test_the_changelog_client_refuses_every_publish_after_a_failed_one() -> None:
    from framework._state.changelog import StopAfterFailure

    calls: list[str] = []

    class Client:
        base = "kept"

        async def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
            calls.append(path)
            if len(calls) == 2:
                raise ConfigError("publish failed")
            return {}

    guard = StopAfterFailure(Client())  # type: ignore[arg-type]
    await guard.request_json("POST", "/s/publishRecords")
    with pytest.raises(ConfigError, match="publish failed"):
        await guard.request_json("POST", "/s/publishRecords")
    with pytest.raises(ConfigError, match="publish failed"):  # refused without being sent: no gap in the changelog
        await guard.request_json("POST", "/s/publishRecords")
    assert await guard.request_json("GET", "/s/getEndOffsets") == {} and guard.base == "kept"
    assert calls == ["/s/publishRecords", "/s/publishRecords", "/s/getEndOffsets"]
