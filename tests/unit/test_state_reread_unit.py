"""`Windowed(checkpoint="reread")` without a network: the hold point (open windows, a closed window still
overlapping it, late records, a result not yet acknowledged), what the driver commits, and the ConfigErrors."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest

from connectors.sensor_minutes import Reading, Stats
from framework import ConfigError, FoundryClient, KeyedState, Tumbling, Windowed
from framework._env.environment import Environment
from framework._handles import Origin, origin_of
from framework._state.checkpoint import held_positions, holds_inputs
from framework._state.reread import Holds
from framework.testing import bind_handle

from .test_state_unit import Total


def test_open_windows_hold_their_first_offset() -> None:
    h = Holds()
    for offset in (0, 2, 4):
        h.add(("a", 0), "r/0", offset)
    h.add(("b", 0), "r/0", 3)
    h.add(("b", 0), "r/1", 1)
    assert h.hold("r", {"r/0": 5, "r/1": 9}) == {"r/0": 0, "r/1": 1}
    assert h.hold("r", {"r/0": 0, "r/1": 0}) == {"r/0": 0, "r/1": 0}  # never above what is acknowledged


def test_a_closed_window_overlapping_the_hold_lowers_it_to_its_first_offset_until_passed() -> None:
    h = Holds()
    for offset in (0, 1, 3):  # window a: offsets 0, 1 and 3 of partition 0
        h.add(("a", 0), "r/0", offset)
    h.add(("b", 0), "r/0", 2)  # window b opens at 2, in the middle of a's records
    h.add(("c", 0), "r/0", 4)
    h.close(("a", 0), "r/0", 4)
    # Open b holds at 2; closed a still has offset 3 >= 2, so a restart from 2 would rebuild a partially: hold at 0.
    assert h.hold("r", {"r/0": 5}) == {"r/0": 0}
    assert h.size == 3
    h.close(("b", 0), "r/0", 5)
    h.add(("c", 0), "r/0", 5)
    # Only c is open (from 4): a (last 3) and b (last 2) are wholly before 4 and forgotten.
    assert h.hold("r", {"r/0": 6}) == {"r/0": 4}
    assert h.size == 1


def test_the_fixpoint_follows_closed_windows_across_partitions() -> None:
    h = Holds()
    h.add(("a", 0), "r/0", 10)
    h.add(("a", 0), "r/1", 3)
    h.add(("a", 0), "r/1", 8)  # a: partition 0 at 10, partition 1 from 3 to 8
    h.add(("b", 0), "r/1", 5)  # b open from 5 in partition 1: a overlaps it there
    h.add(("c", 0), "r/0", 12)
    h.close(("a", 0), "r/0", 12)
    # b holds partition 1 at 5 -> a has 8 >= 5 -> partition 1 to 3 and partition 0 to a's 10.
    assert h.hold("r", {"r/0": 13, "r/1": 9}) == {"r/0": 10, "r/1": 3}


def test_a_closed_window_is_held_until_the_record_that_closed_it_is_acknowledged() -> None:
    h = Holds()
    h.add(("a", 0), "r/0", 0)
    h.add(("a", 0), "r/0", 1)
    h.close(("a", 0), "r/0", 7)  # closed by offset 7: its result goes out with 7's batch
    assert h.hold("r", {"r/0": 5}) == {"r/0": 0}  # 7 not acknowledged: a must be re-read whole
    assert h.hold("r", {"r/0": 8}) == {"r/0": 8}  # acknowledged: a is wholly before, forgotten
    assert h.size == 0


def test_late_records_join_the_ranges_of_their_closed_windows() -> None:
    h = Holds()
    h.add(("a", 0), "r/0", 0)
    h.add(("b", 60), "r/0", 1)
    h.close(("a", 0), "r/0", 1)
    h.late("a", [0], "r/0", 3)  # a late reading of window a at offset 3
    # b open from 1; a's late record at 3 >= 1: a restart from 1 would see it without a's other records.
    assert h.hold("r", {"r/0": 4}) == {"r/0": 0}
    h.late("z", [0], "r/0", 4)  # a window nobody holds (never seen, or forgotten): nothing to join
    assert h.size == 2


def test_sessions_merged_hold_every_record_of_both() -> None:
    h = Holds()
    h.add(("a", 0), "r/0", 0)
    h.add(("a", 100), "r/1", 2)
    h.merge([("a", 0), ("a", 100)], ("a", 0))
    h.add(("a", 0), "r/1", 3)
    assert h.size == 1
    assert h.hold("r", {"r/0": 1, "r/1": 4}) == {"r/0": 0, "r/1": 2}


def minutes(**options: Any) -> Windowed[Any, Any, Any]:
    return Windowed(
        "state", window=Tumbling(timedelta(minutes=1)), aggregate=Stats(), key="sensor", time="ts", **options
    )


async def test_the_driver_commits_up_to_the_hold_and_what_is_acknowledged(
    env: Environment, client: FoundryClient
) -> None:
    w = bind_handle(minutes(checkpoint="reread"), env, client)  # no alias in the map needed: no resource
    assert not w.resource
    w.inputs = {"readings": cast(Any, SimpleNamespace(info=SimpleNamespace(partitions=2), committed={"0": 0, "1": 0}))}

    async def add(partition: str, offset: int, ts: float) -> list[Any]:
        with origin_of(Origin("readings", partition, offset)):
            return await w.add(Reading(sensor="s", ts=ts, value=1.0))

    await add("0", 0, 10)
    await add("1", 0, 20)
    await add("0", 1, 70)  # minute 60 opens at offset 1 of partition 0
    assert holds_inputs([w]) and not holds_inputs([minutes()])
    assert held_positions([w], "readings", {"0": 1, "1": 0}) == {"0": -1, "1": -1}  # minute 0 open: nothing
    closed = await add("1", 1, 75)  # the watermark passes 60: minute 0 closes (whole) at partition 1 offset 1
    assert [(r.key, r.start_ms, r.value.count) for r in closed] == [("s", 0, 2)]
    assert held_positions([w], "readings", {"0": 1, "1": 0}) == {"0": -1, "1": -1}  # its closer not acked yet
    # Acknowledged through offset 1 of both: minute 0 is given up, minute 60 holds both partitions at offset 1.
    assert held_positions([w], "readings", {"0": 1, "1": 1}) == {"0": 0, "1": 0}
    assert w.size == 1
    assert w.open_windows() == {("s", 60_000): Stats().add(Stats().first(Reading(sensor="s", ts=70, value=1.0)),
                                                           Reading(sensor="s", ts=75, value=1.0))}  # fmt: skip


def test_reread_mode_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="snapshots= needs checkpoint='changelog'") as err:
        minutes(checkpoint="reread", snapshots="state_snapshots")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="checkpoint must be 'changelog' or 'reread'"):
        minutes(checkpoint="replay")
    with pytest.raises(ConfigError, match="KeyedState\\('totals'\\): checkpoint='reread' is for Windowed only"):
        KeyedState[Total]("totals", checkpoint="reread")
    assert minutes().resource and minutes(checkpoint="changelog").checkpoint == "changelog"
