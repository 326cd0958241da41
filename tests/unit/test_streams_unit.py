"""StreamOutput and StreamInput against aioresponses: batching, linger, order, acks, schema rejections, reads."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import orjson
import pytest
from aioresponses import aioresponses

from framework._env.environment import Environment
from framework._errors import ConfigError, PermissionDeniedError, RecordValidationError
from framework._handles import AckTracker, Origin, origin_of
from framework._http import FoundryClient
from framework._streams.input import StreamInput
from framework._streams.output import StreamOutput, _halves, _Part, _Records, _Ticket

from .stream_mocks import Doubled, InputStream, Number, Publishes, bind, make_env, wait_for

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def env(tmp_path: Path) -> Environment:
    return make_env(tmp_path)


async def opened_output(
    env: Environment, client: FoundryClient, mock: aioresponses, *, batch_size: int, linger_ms: float
) -> StreamOutput[Doubled]:
    out = bind(StreamOutput[Doubled]("doubled", batch_size=batch_size, linger_ms=linger_ms), env, client)
    await out.open()
    return out


# ---------------------------------------------------------------------------------------------- StreamOutput


async def test_output_sends_full_batches_at_once_and_keeps_order(
    env: Environment, client: FoundryClient, mock: aioresponses
) -> None:
    sent = Publishes(mock, "doubled")
    out = await opened_output(env, client, mock, batch_size=3, linger_ms=10_000)
    try:
        for i in range(7):
            await out.publish(Doubled(twice_x=i))
        await wait_for(lambda: len(sent.batches) == 2, "the two full batches")
        await asyncio.sleep(0.05)
        assert [len(b) for b in sent.batches] == [3, 3]  # the seventh lingers (10 s)
        assert out.pending == 1
        await out.flush()
        assert [len(b) for b in sent.batches] == [3, 3, 1]
        assert [r["twice_x"] for r in sent.records] == list(range(7))
        assert out.pending == 0 and out.metrics.records == 7 and out.metrics.batches == 3
    finally:
        await out.close()


async def test_output_sends_a_partial_batch_after_the_linger_time(
    env: Environment, client: FoundryClient, mock: aioresponses
) -> None:
    sent = Publishes(mock, "doubled")
    out = await opened_output(env, client, mock, batch_size=100, linger_ms=150)
    try:
        started = time.monotonic()
        await out.publish(Doubled(twice_x=1))
        await out.publish({"twice_x": 2})  # dicts are validated into the model too
        await asyncio.sleep(0.05)
        assert sent.batches == []
        await wait_for(lambda: len(sent.batches) == 1, "the lingering batch")
        assert time.monotonic() - started >= 0.14
        assert sent.batches == [[{"twice_x": 1}, {"twice_x": 2}]]
    finally:
        await out.close()


async def test_many_batches_keep_publish_order(env: Environment, client: FoundryClient, mock: aioresponses) -> None:
    sent = Publishes(mock, "doubled")
    out = await opened_output(env, client, mock, batch_size=4, linger_ms=1)
    try:
        await out.publish_many(Doubled(twice_x=i) for i in range(50))
        for i in range(50, 103):
            await out.publish(Doubled(twice_x=i))
        await out.flush()
        assert [r["twice_x"] for r in sent.records] == list(range(103))
        assert all(len(b) <= 4 for b in sent.batches)
    finally:
        await out.close()


async def test_flush_waits_for_the_server_to_acknowledge(
    env: Environment, client: FoundryClient, mock: aioresponses
) -> None:
    sent = Publishes(mock, "doubled")
    sent.gate.clear()
    out = await opened_output(env, client, mock, batch_size=10, linger_ms=10_000)
    try:
        tracker = AckTracker()
        with tracker.active():
            await out.publish(Doubled(twice_x=1))
            await out.publish(Doubled(twice_x=2))
        assert len(tracker.pending) == 2  # publishes bind to the input batch being processed
        flushing = asyncio.create_task(out.flush())
        acked = asyncio.create_task(tracker.wait())
        await wait_for(lambda: sent.attempts == 1, "the request to be sent")
        await asyncio.sleep(0.05)
        assert not flushing.done() and not acked.done()
        assert out.pending == 2
        sent.gate.set()
        await asyncio.wait_for(flushing, 2)
        await asyncio.wait_for(acked, 2)
        assert sent.records == [{"twice_x": 1}, {"twice_x": 2}]
    finally:
        await out.close()


async def test_invalid_record_raises_in_the_caller_and_is_not_buffered(
    env: Environment, client: FoundryClient, mock: aioresponses
) -> None:
    sent = Publishes(mock, "doubled")
    out = await opened_output(env, client, mock, batch_size=10, linger_ms=1)
    try:
        with pytest.raises(RecordValidationError, match="twice_x") as caught:
            await out.publish({"twice_x": "not a number"})
        assert caught.value.alias == "doubled"
        with pytest.raises(RecordValidationError):  # publish_many validates all before buffering any
            await out.publish_many([{"twice_x": 1}, {"nope": 2}])
        assert out.pending == 0
        await out.flush()
        assert sent.records == []
    finally:
        await out.close()


async def test_schema_rejection_splits_the_batch_and_reports_only_the_rejected(
    env: Environment, client: FoundryClient, mock: aioresponses
) -> None:
    sent = Publishes(mock, "doubled", reject=lambda r: r["twice_x"] == 4)
    out = await opened_output(env, client, mock, batch_size=10, linger_ms=10_000)
    rejected: list[tuple[dict[str, int], str]] = []

    async def on_rejected(payload: dict[str, int], error: str, origin: object) -> None:
        rejected.append((payload, error))

    out.on_rejected = on_rejected
    try:
        await out.publish_many(Doubled(twice_x=i) for i in range(6))
        await out.flush()  # does not raise: the rejected record went to on_rejected
        assert [r for batch in sent.batches for r in batch] == [{"twice_x": i} for i in (0, 1, 2, 3, 5)]
        assert len(sent.batches) < 5  # halves, not one request per record
        assert [p for p, _ in rejected] == [{"twice_x": 4}]
        assert "RecordDoesNotMatchStreamSchema" in rejected[0][1]
        assert out.metrics.invalid == 1 and out.metrics.records == 5
    finally:
        await out.close()


async def test_calls_split_across_batches_and_halves_keep_records_origins_and_order(
    env: Environment, client: FoundryClient, mock: aioresponses
) -> None:
    """Each call's records are encoded once; a batch boundary or a rejected half that falls inside a call
    sends part of it, with the values published (a model changed afterwards changes nothing) and the input
    position of each record."""
    sent = Publishes(mock, "doubled", reject=lambda r: r["twice_x"] in (4, 9))
    out = await opened_output(env, client, mock, batch_size=4, linger_ms=10_000)
    rejected: list[tuple[dict[str, int], Origin | None]] = []

    async def on_rejected(payload: dict[str, int], error: str, origin: Origin | None) -> None:
        rejected.append((payload, origin))

    out.on_rejected = on_rejected
    try:
        first = [Doubled(twice_x=i) for i in range(3)]
        await out.publish_many(first, [Origin("numbers", "0", 10 + i) for i in range(3)])
        first[2].twice_x = 99  # after publishing: not what is sent
        with origin_of(Origin("numbers", "1", 7)):
            await out.publish_many(Doubled(twice_x=i) for i in range(3, 10))
        await out.flush()
        assert [r["twice_x"] for batch in sent.batches for r in batch] == [0, 1, 2, 3, 5, 6, 7, 8]
        assert sent.batches[0] == [{"twice_x": i} for i in range(4)]  # 3 of the first call, 1 of the second
        assert rejected == [({"twice_x": 4}, Origin("numbers", "1", 7)), ({"twice_x": 9}, Origin("numbers", "1", 7))]
        assert out.pending == 0 and out.metrics.records == 8 and out.metrics.invalid == 2
    finally:
        await out.close()


async def test_schema_rejection_without_dead_letters_fails_that_record_only(
    env: Environment, client: FoundryClient, mock: aioresponses
) -> None:
    sent = Publishes(mock, "doubled", reject=lambda r: r["twice_x"] == 1)
    out = await opened_output(env, client, mock, batch_size=10, linger_ms=10_000)
    try:
        await out.publish_many(Doubled(twice_x=i) for i in range(3))
        with pytest.raises(RecordValidationError, match="RecordDoesNotMatchStreamSchema"):
            await out.flush()
        assert [r for batch in sent.batches for r in batch] == [{"twice_x": 0}, {"twice_x": 2}]
    finally:
        await out.close()


async def test_other_publish_errors_fail_every_record_of_the_batch(
    env: Environment, client: FoundryClient, mock: aioresponses
) -> None:
    Publishes(mock, "doubled", fail_status=403)
    out = await opened_output(env, client, mock, batch_size=10, linger_ms=10_000)
    try:
        tracker = AckTracker()
        with tracker.active():
            await out.publish_many(Doubled(twice_x=i) for i in range(3))
        with pytest.raises(PermissionDeniedError) as caught:
            await out.flush()
        assert caught.value.error_name == "PublishRecordsToStreamPermissionDenied"
        with pytest.raises(PermissionDeniedError):
            await tracker.wait()
        assert out.metrics.records == 0
    finally:
        await out.close()


async def test_a_full_buffer_makes_publish_wait(env: Environment, client: FoundryClient, mock: aioresponses) -> None:
    sent = Publishes(mock, "doubled")
    sent.gate.clear()
    out = await opened_output(env, client, mock, batch_size=2, linger_ms=0)
    try:
        for i in range(2):
            await out.publish(Doubled(twice_x=i))
        await wait_for(lambda: sent.attempts == 1, "the first batch in flight")
        for i in range(2, 10):  # fills the buffer: 4 batches
            await out.publish(Doubled(twice_x=i))
        blocked = asyncio.create_task(out.publish(Doubled(twice_x=10)))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        sent.gate.set()
        await asyncio.wait_for(blocked, 2)
        await out.flush()
        assert [r["twice_x"] for r in sent.records] == list(range(11))
    finally:
        await out.close()


async def test_close_fails_what_was_not_sent(env: Environment, client: FoundryClient, mock: aioresponses) -> None:
    Publishes(mock, "doubled")
    out = await opened_output(env, client, mock, batch_size=10, linger_ms=10_000)
    tracker = AckTracker()
    with tracker.active():
        await out.publish(Doubled(twice_x=1))
    await out.close()
    with pytest.raises(RuntimeError, match="closed before the record was sent"):
        await tracker.wait()
    with pytest.raises(RuntimeError, match="not open"):
        await bind(StreamOutput[Doubled]("doubled"), env, client).publish(Doubled(twice_x=1))


# ---------------------------------------------------------------------------------------------- StreamInput


async def test_input_parses_read_records_then_reads_ahead_with_get_records(
    env: Environment, client: FoundryClient, mock: aioresponses
) -> None:
    stream = InputStream(
        mock,
        "numbers",
        {
            "0": [(5, {"x": 1}), ("6", {"x": 2}), (7, {"x": "nope"}), ("8", {"x": 4}), (9, {"x": 5})],
            "1": [("0", {"x": 10}), (1, {"x": 11}), (2, {"x": 12})],
        },
        position={"0": 5, "1": 0},
    )
    source = bind(StreamInput[Number]("numbers"), env, client)
    await source.open()
    assert stream.calls[:2] == ["createSubscriber", "getReadPosition"]
    assert source.committed == source.cursor == {"0": 5, "1": 0}

    first = await source.read_batch(limit=3)
    assert stream.calls[-1] == "readRecords" and stream.read_bodies[-1] == {"limit": 3, "viewRid": "view.numbers"}
    assert [r.x for r in first.records] == [1, 2, 10]
    assert first.origins == [("0", 5), ("0", 6), ("1", 0)]
    assert first.positions == {"0": 6, "1": 0}
    assert source.cursor == {"0": 7, "1": 1} and source.committed == {"0": 5, "1": 0}

    # The first batch is not committed: the next read comes from the local cursor through getRecords, one
    # partition per request with the whole limit, the partitions taken in turn.
    second = await source.read_batch(limit=4)
    assert stream.calls[-1] == "getRecords" and stream.calls[-2] == "readRecords"
    assert [(p["partitionId"], p["startOffset"], p["limit"]) for p in stream.get_params] == [("0", "7", "4")]
    assert all(p["preview"] == "true" for p in stream.get_params)
    assert [r.x for r in second.records] == [4, 5]
    assert [(i.partition, i.offset, i.raw) for i in second.invalid] == [("0", 7, {"x": "nope"})]
    assert "x" in second.invalid[0].error
    assert second.positions == {"0": 9} and second.size == 3
    assert source.cursor == {"0": 10, "1": 1}
    assert source.metrics.records == 5 and source.metrics.invalid == 1

    await source.commit(first.positions)
    assert stream.commits == [{"0": 6, "1": 0}]
    assert source.committed == {"0": 7, "1": 1}
    third = await source.read_batch(limit=4)
    assert stream.calls[-1] == "getRecords"  # the second batch is still in flight
    assert [(p["partitionId"], p["startOffset"]) for p in stream.get_params[1:]] == [("1", "1")]  # its turn
    assert [r.x for r in third.records] == [11, 12] and third.positions == {"1": 2}
    fourth = await source.read_batch(limit=4)  # nothing left: partition 0, then 1, pass their turns on
    assert fourth.size == 0 and [p["partitionId"] for p in stream.get_params[2:]] == ["0", "1"]

    await source.commit(second.positions)
    await source.commit(third.positions)
    assert stream.commits == [{"0": 6, "1": 0}, {"0": 9}, {"1": 2}]
    assert source.committed == source.cursor == {"0": 10, "1": 3}
    stream.calls.clear()
    rest = await source.read_batch(limit=10)  # everything read so far is committed: back to the subscriber
    assert stream.calls == ["readRecords"]
    assert rest.size == 0 and rest.positions == {}
    await source.commit(rest.positions)  # an empty batch commits nothing
    assert len(stream.commits) == 3


async def test_earliest_mode_reads_with_get_records_and_commits_in_memory(
    tmp_path: Path, client: FoundryClient, mock: aioresponses
) -> None:
    env = make_env(tmp_path, CONNECTOR_READ_MODE="earliest")
    stream = InputStream(mock, "numbers", {"0": [(0, {"x": 1}), (1, {"x": 2})], "1": [("0", {"x": 3})]})
    source = bind(StreamInput[Number]("numbers"), env, client)
    await source.open()
    batch, other = await source.read_batch(limit=10), await source.read_batch(limit=10)  # a partition each
    assert [r.x for r in batch.records] == [1, 2] and [r.x for r in other.records] == [3]
    await source.commit(batch.positions)
    await source.commit(other.positions)
    assert source.committed == {"0": 2, "1": 1}
    assert set(stream.calls) == {"getRecords"}
    assert (await source.read_batch()).size == 0
    assert stream.commits == []


async def test_latest_mode_starts_at_the_end_offsets(tmp_path: Path, client: FoundryClient, mock: aioresponses) -> None:
    env = make_env(tmp_path, CONNECTOR_READ_MODE="latest")
    InputStream(mock, "numbers", {"0": [(0, {"x": 1}), (1, {"x": 2})]})
    source = bind(StreamInput[Number]("numbers"), env, client)
    await source.open()
    assert source.committed == {"0": 2}
    assert (await source.read_batch()).size == 0


async def test_lag_counts_uncommitted_records(env: Environment, client: FoundryClient, mock: aioresponses) -> None:
    InputStream(mock, "numbers", {"0": [(i, {"x": i}) for i in range(5)], "1": [(0, {"x": 9})]}, position={"0": 2})
    source = bind(StreamInput[Number]("numbers"), env, client)
    await source.open()
    assert await source.lag() == 4 and source.metrics.lag == 4


async def test_missing_model_is_a_config_error(env: Environment, client: FoundryClient, mock: aioresponses) -> None:
    source = bind(StreamInput("numbers"), env, client)  # type: ignore[var-annotated]
    with pytest.raises(ConfigError, match=r"StreamInput\('numbers'\) has no record model"):
        source.model  # noqa: B018
    with pytest.raises(ConfigError, match="has no record model"):
        await source.check()
    output = bind(StreamOutput("doubled"), env, client)  # type: ignore[var-annotated]
    with pytest.raises(ConfigError, match=r"StreamOutput\('doubled'\) has no record model"):
        await output.check()
    assert not mock.requests  # found before touching the network
    assert bind(StreamInput("numbers", model=Number), env, client).model is Number


async def test_unbound_handle_says_when_to_use_it() -> None:
    with pytest.raises(RuntimeError, match="used before the connector started"):
        StreamInput[Number]("numbers").rid  # noqa: B018
    with pytest.raises(ConfigError, match="needs the alias"):
        StreamInput[Number]("")


async def test_halves_split_any_run_of_parts_by_count_keeping_every_record_in_order() -> None:
    rng = random.Random(7)
    for _ in range(500):
        parts, first = [], 0
        for _ in range(rng.randint(1, 5)):
            count = rng.randint(1, 6)
            records = _Records(orjson.dumps(list(range(first, first + count))), count, _Ticket(count), None, None)
            start = rng.randint(0, count - 1)
            parts.append(_Part(records, start, rng.randint(start + 1, count)))
            first += count
        total = sum(p.count for p in parts)
        if total < 2:
            continue
        head, tail = _halves(parts)

        def values(chunk: list[_Part]) -> list[int]:
            return [v for p in chunk for v in orjson.loads(b"[" + p.elements() + b"]")]

        assert sum(p.count for p in head) == total // 2 and all(p.count > 0 for p in head + tail)
        assert values(head) + values(tail) == values(parts)
