"""Connector against aioresponses: declaration checks, commits after acks and in order, dead letters, schemas."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses
from pydantic import BaseModel, Field

from fake_stream_proxy.streams.schema import check_schema
from framework import Connector, DeadLetterOutput, StreamInput, StreamOutput, stream_schema
from framework._driver import Driver
from framework._env.environment import Environment
from framework._errors import ConfigError, PermissionDeniedError
from framework._http import FoundryClient

from .stream_mocks import FAST, Doubled, InputStream, Number, Publishes, make_env, mock_stream, wait_for

pytestmark = pytest.mark.timeout(20)


class Doubler(Connector):
    name = "unit"
    numbers = StreamInput[Number]("numbers")
    doubled = StreamOutput[Doubled]("doubled")
    dead_letters = DeadLetterOutput("dead_letters")

    async def transform(self, record: Number) -> Doubled:
        return Doubled(twice_x=2 * record.x)


@pytest.fixture
def env(tmp_path: Path) -> Environment:
    return make_env(tmp_path, CONNECTOR_PUBLISH_LINGER_MS="1")


def numbers(count: int, partitions: int = 1) -> dict[str, list[tuple[int | str, Any]]]:
    stream: dict[str, list[tuple[int | str, Any]]] = {str(p): [] for p in range(partitions)}
    for i in range(count):
        part = stream[str(i % partitions)]
        part.append((len(part), {"x": i}))
    return stream


async def serve_until(connector: Connector, done: Any, what: str) -> None:
    """Serve until `done()` holds, then stop and wait for a clean exit."""
    task = asyncio.create_task(Driver(connector).serve())
    try:
        await wait_for(lambda: task.done() or done(), what)
        if task.done():
            task.result()
    finally:
        connector.stop()
        await asyncio.wait_for(task, 5)


# ---------------------------------------------------------------------------------------------- declarations


class Both(Connector):
    numbers = StreamInput[Number]("numbers")

    async def transform(self, record: Number) -> None:
        return None

    async def run(self) -> None:
        return None


class Neither(Connector):
    numbers = StreamInput[Number]("numbers")


class TransformWithoutInput(Connector):
    doubled = StreamOutput[Doubled]("doubled")

    async def transform(self, record: Number) -> None:
        return None


class NoModel(Connector):
    numbers = StreamInput("numbers")  # type: ignore[var-annotated]

    async def transform(self, record: Any) -> None:
        return None


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (Both, "must define exactly one of transform(), transform_batch() or run(); it defines transform, run"),
        (Neither, "it defines none"),
        (TransformWithoutInput, "defines transform() but declares no StreamInput"),
    ],
)
async def test_connector_mode_errors_stop_it_before_any_request(
    env: Environment, client: FoundryClient, mock: aioresponses, cls: type[Connector], message: str
) -> None:
    connector = cls(env, client)
    with pytest.raises(ConfigError) as caught:
        Driver(connector).mode()
    assert message in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ConfigError):
        await Driver(connector).serve()
    with pytest.raises(ConfigError):
        await Driver(connector).check()
    assert not mock.requests


async def test_model_missing_is_a_config_error_at_check(
    env: Environment, client: FoundryClient, mock: aioresponses
) -> None:
    connector = NoModel(env, client)
    assert Driver(connector).mode() == "transform"
    with pytest.raises(ConfigError, match=r"StreamInput\[MyModel\]\('numbers'\)"):
        await Driver(connector).check()
    assert not mock.requests


async def test_declared_handles_are_bound_copies(env: Environment, client: FoundryClient) -> None:
    first, second = Doubler(env, client), Doubler(env, client)
    assert first.numbers is not second.numbers is not Doubler.numbers
    assert first.numbers.rid == env.ref("numbers").rid
    driver = Driver(first)
    assert set(driver.handles) == {"numbers", "doubled", "dead_letters"}
    assert driver.dead_letters is driver.handles["dead_letters"]
    assert driver.default_output is first.doubled  # the dead-letter output is not a default output
    assert [h.alias for h in driver.inputs] == ["numbers"]
    with pytest.raises(ConfigError, match="alias 'missing' is not in RESOURCE_ALIAS_MAP"):

        class Missing(Connector):
            numbers = StreamInput[Number]("missing")

        Missing(env, client)


# ---------------------------------------------------------------------------------------------- the loop


async def test_doubles_and_commits_after_the_acks(env: Environment, client: FoundryClient, mock: aioresponses) -> None:
    stream = InputStream(mock, "numbers", numbers(50, partitions=2))
    out = Publishes(mock, "doubled")
    mock_stream(mock, "dead_letters")
    connector = Doubler(env, client)
    await serve_until(connector, lambda: stream.position == {"0": 25, "1": 25}, "everything committed")
    assert sorted(r["twice_x"] for r in out.records) == [2 * i for i in range(50)]
    assert connector.numbers.committed == {"0": 25, "1": 25}
    assert stream.calls[:2] == ["createSubscriber", "getReadPosition"]
    # One subscriber per connector and input, the same on every start (that is what resumes the position).
    assert stream.subscriber_ids == [connector.numbers.subscriber_id]
    assert stream.subscriber_ids[0].startswith("unit-numbers")
    assert Doubler(env, client).numbers.subscriber_id == connector.numbers.subscriber_id


async def test_no_commit_when_the_publish_fails(env: Environment, client: FoundryClient, mock: aioresponses) -> None:
    stream = InputStream(mock, "numbers", numbers(5))
    out = Publishes(mock, "doubled", fail_status=403)
    mock_stream(mock, "dead_letters")
    connector = Doubler(env, client)
    with pytest.raises(PermissionDeniedError) as caught:
        await asyncio.wait_for(Driver(connector).serve(), 5)
    assert caught.value.error_name == "PublishRecordsToStreamPermissionDenied"
    assert out.attempts >= 1
    assert "commitOffsets" not in stream.calls and stream.commits == []
    assert stream.position == {"0": 0}


class TwoOutputs(Connector):
    """x == 0 goes to `slow`, everything else to `fast`, published explicitly."""

    name = "unit"
    numbers = StreamInput[Number]("numbers")
    slow = StreamOutput[Doubled]("slow")
    fast = StreamOutput[Doubled]("fast")

    async def transform(self, record: Number) -> None:
        target = self.slow if record.x == 0 else self.fast
        await target.publish(Doubled(twice_x=2 * record.x))


async def test_commits_wait_for_earlier_batches_and_stay_in_order(tmp_path: Path, mock: aioresponses) -> None:
    env = make_env(tmp_path, CONNECTOR_READ_BATCH_SIZE="1", CONNECTOR_PUBLISH_LINGER_MS="0")
    stream = InputStream(mock, "numbers", numbers(3))
    slow, fast = Publishes(mock, "slow"), Publishes(mock, "fast")
    slow.gate.clear()
    async with FoundryClient(env, retry=FAST) as client:
        connector = TwoOutputs(env, client)
        task = asyncio.create_task(Driver(connector).serve())
        try:
            await wait_for(lambda: len(fast.records) == 2, "the later batches to be acknowledged")
            await asyncio.sleep(0.05)
            assert slow.attempts == 1 and slow.records == []
            assert stream.commits == []  # batches 2 and 3 are acknowledged but batch 1 is not
            slow.gate.set()
            await wait_for(lambda: stream.position == {"0": 3}, "everything committed")
        finally:
            connector.stop()
            await asyncio.wait_for(task, 5)
    # Batch 1's commit waited for its write; batches 2 and 3, acknowledged already, went in the same commit.
    assert stream.commits == [{"0": 2}]
    assert stream.calls.count("readRecords") >= 1 and "getRecords" in stream.calls  # read ahead


async def test_commit_waits_until_the_commit_before_it_is_done(tmp_path: Path, mock: aioresponses) -> None:
    env = make_env(tmp_path, CONNECTOR_READ_BATCH_SIZE="2", CONNECTOR_PUBLISH_LINGER_MS="0")
    stream = InputStream(mock, "numbers", numbers(6))
    stream.commit_gate.clear()
    Publishes(mock, "doubled")
    mock_stream(mock, "dead_letters")
    async with FoundryClient(env, retry=FAST) as client:
        connector = Doubler(env, client)
        task = asyncio.create_task(Driver(connector).serve())
        try:
            await wait_for(lambda: connector.doubled.metrics.records == 6, "every output acknowledged")
            await asyncio.sleep(0.05)
            assert stream.commits == []  # the first commit is held: later ones must not overtake it
            stream.commit_gate.set()
            await wait_for(lambda: stream.position == {"0": 6}, "everything committed")
        finally:
            connector.stop()
            await asyncio.wait_for(task, 5)
    # The batches acknowledged while the first commit was held are committed together after it, in order.
    assert stream.commits == [{"0": 1}, {"0": 5}]


async def test_invalid_input_records_are_dead_lettered_and_committed(
    env: Environment, client: FoundryClient, mock: aioresponses
) -> None:
    stream = InputStream(
        mock,
        "numbers",
        {"0": [(0, {"x": 1}), (1, {"x": None}), (2, {"y": 3}), (3, {"x": 4})]},
    )
    out, dead = Publishes(mock, "doubled"), Publishes(mock, "dead_letters")
    connector = Doubler(env, client)
    await serve_until(connector, lambda: stream.position == {"0": 4}, "everything committed")
    assert [r["twice_x"] for r in out.records] == [2, 8]
    letters = dead.records
    assert [(d["source"], d["partition"], d["offset"]) for d in letters] == [("numbers", "0", 1), ("numbers", "0", 2)]
    assert [json.loads(d["raw"]) for d in letters] == [{"x": None}, {"y": 3}]
    assert all(d["connector"] == "unit" and "x" in d["error"] for d in letters)
    assert connector.numbers.metrics.invalid == 2


async def test_output_schema_rejection_dead_letters_only_that_record(
    env: Environment, client: FoundryClient, mock: aioresponses
) -> None:
    stream = InputStream(mock, "numbers", numbers(5))
    out = Publishes(mock, "doubled", reject=lambda r: r["twice_x"] == 4)
    dead = Publishes(mock, "dead_letters")
    connector = Doubler(env, client)
    await serve_until(connector, lambda: stream.position == {"0": 5}, "everything committed")
    assert sorted(r["twice_x"] for batch in out.batches for r in batch) == [0, 2, 6, 8]
    (letter,) = dead.records
    # Where the rejected output came from: the input record at numbers/0/2 (x=2 doubled is 4).
    assert (letter["source"], letter["partition"], letter["offset"]) == ("numbers", "0", 2)
    assert json.loads(letter["raw"]) == {"twice_x": 4}
    assert "RecordDoesNotMatchStreamSchema" in letter["error"]
    assert connector.doubled.metrics.invalid == 1


async def test_a_dead_letter_that_cannot_be_written_holds_the_commit(
    env: Environment, client: FoundryClient, mock: aioresponses
) -> None:
    stream = InputStream(mock, "numbers", numbers(3))
    Publishes(mock, "doubled", reject=lambda r: r["twice_x"] == 2)
    dead = Publishes(mock, "dead_letters", fail_status=403)
    connector = Doubler(env, client)
    with pytest.raises(PermissionDeniedError):
        await asyncio.wait_for(Driver(connector).serve(), 5)
    assert dead.attempts >= 1
    assert stream.commits == []  # the rejected record is neither written nor dead-lettered: read it again


class Failing(Connector):
    name = "unit"
    numbers = StreamInput[Number]("numbers")
    doubled = StreamOutput[Doubled]("doubled")

    async def transform(self, record: Number) -> Doubled:
        if record.x == 3:
            raise ValueError("cannot double 3")
        return Doubled(twice_x=2 * record.x)


async def test_a_transform_exception_stops_the_connector_without_committing_its_batch(
    tmp_path: Path, mock: aioresponses
) -> None:
    env = make_env(tmp_path, CONNECTOR_READ_BATCH_SIZE="2")
    stream = InputStream(mock, "numbers", numbers(6))
    Publishes(mock, "doubled")
    async with FoundryClient(env, retry=FAST) as client:
        with pytest.raises(ValueError, match="cannot double 3"):  # the error itself, not an ExceptionGroup
            await asyncio.wait_for(Driver(Failing(env, client)).serve(), 5)
    assert stream.commits in ([], [{"0": 1}])  # x == 2, 3 are in the second batch: never committed
    assert stream.position["0"] <= 2


class Splitter(Connector):
    numbers = StreamInput[Number]("numbers")
    doubled = StreamOutput[Doubled]("doubled")

    async def transform(self, record: Number) -> Any:
        if record.x == 1:
            return None
        if record.x == 2:
            return []
        if record.x == 3:
            return ({"twice_x": v} for v in (6, 7))
        return [Doubled(twice_x=2 * record.x)]


class BatchDoubler(Connector):
    numbers = StreamInput[Number]("numbers")
    doubled = StreamOutput[Doubled]("doubled")

    async def transform_batch(self, records: list[Number]) -> list[Doubled]:
        return [Doubled(twice_x=2 * r.x) for r in records]


class TwoOutputsReturning(Connector):
    numbers = StreamInput[Number]("numbers")
    slow = StreamOutput[Doubled]("slow")
    fast = StreamOutput[Doubled]("fast")

    async def transform(self, record: Number) -> Doubled:
        return Doubled(twice_x=record.x)


async def test_transform_results_none_empty_iterable_and_list(
    env: Environment, client: FoundryClient, mock: aioresponses
) -> None:
    stream = InputStream(mock, "numbers", numbers(5))
    out = Publishes(mock, "doubled")
    await serve_until(Splitter(env, client), lambda: stream.position == {"0": 5}, "everything committed")
    assert [r["twice_x"] for r in out.records] == [0, 6, 7, 8]


async def test_transform_batch(env: Environment, client: FoundryClient, mock: aioresponses) -> None:
    stream = InputStream(mock, "numbers", numbers(7, partitions=2))
    out = Publishes(mock, "doubled")
    await serve_until(BatchDoubler(env, client), lambda: stream.position == {"0": 4, "1": 3}, "all committed")
    assert sorted(r["twice_x"] for r in out.records) == [2 * i for i in range(7)]


async def test_returning_records_with_two_outputs_is_a_config_error(
    env: Environment, client: FoundryClient, mock: aioresponses
) -> None:
    stream = InputStream(mock, "numbers", numbers(2))
    Publishes(mock, "slow")
    Publishes(mock, "fast")
    with pytest.raises(ConfigError, match="does not have exactly one StreamOutput"):
        await asyncio.wait_for(Driver(TwoOutputsReturning(env, client)).serve(), 5)
    assert stream.commits == []


# ---------------------------------------------------------------------------------------------- stream_schema


class Inner(BaseModel):
    a: int
    b: str | None = None


class Everything(BaseModel):
    flag: bool
    count: int
    ratio: float
    name: str
    blob: bytes
    at: dt.datetime
    day: dt.date
    amount: Decimal
    tags: list[str]
    maybe: list[int | None]
    pairs: tuple[float, ...]
    scores: dict[str, float]
    sparse: dict[str, int | None]
    inner: Inner
    inners: list[Inner]
    optional: int | None
    defaulted: str = "x"
    renamed: int = Field(alias="Renamed")


def _f(name: str, data_type: dict[str, Any], nullable: bool = False) -> dict[str, Any]:
    return {"name": name, "schema": {"nullable": nullable, "dataType": data_type}}


INNER_FIELDS = [_f("a", {"type": "long"}), _f("b", {"type": "string"}, nullable=True)]


def test_stream_schema_of_every_supported_type() -> None:
    schema = stream_schema(Everything)
    assert schema == {
        "fields": [
            _f("flag", {"type": "boolean"}),
            _f("count", {"type": "long"}),
            _f("ratio", {"type": "double"}),
            _f("name", {"type": "string"}),
            _f("blob", {"type": "binary"}),
            _f("at", {"type": "timestamp"}),
            _f("day", {"type": "date"}),
            _f("amount", {"type": "decimal", "precision": 38, "scale": 18}),
            _f("tags", {"type": "array", "itemsSchema": {"nullable": False, "dataType": {"type": "string"}}}),
            _f("maybe", {"type": "array", "itemsSchema": {"nullable": True, "dataType": {"type": "long"}}}),
            _f("pairs", {"type": "array", "itemsSchema": {"nullable": False, "dataType": {"type": "double"}}}),
            _f(
                "scores",
                {
                    "type": "map",
                    "keySchema": {"nullable": False, "dataType": {"type": "string"}},
                    "valueSchema": {"nullable": False, "dataType": {"type": "double"}},
                },
            ),
            _f(
                "sparse",
                {
                    "type": "map",
                    "keySchema": {"nullable": False, "dataType": {"type": "string"}},
                    "valueSchema": {"nullable": True, "dataType": {"type": "long"}},
                },
            ),
            _f("inner", {"type": "struct", "subFields": INNER_FIELDS}),
            _f(
                "inners",
                {
                    "type": "array",
                    "itemsSchema": {"nullable": False, "dataType": {"type": "struct", "subFields": INNER_FIELDS}},
                },
            ),
            _f("optional", {"type": "long"}, nullable=True),
            _f("defaulted", {"type": "string"}, nullable=True),  # has a default: may be absent
            _f("Renamed", {"type": "long"}),  # the alias is the wire name
        ]
    }
    assert check_schema(schema) == schema  # and the fake (like Foundry) accepts it


def test_stream_schema_rejects_types_without_a_foundry_type() -> None:
    class Ambiguous(BaseModel):
        either: int | str

    class Opaque(BaseModel):
        thing: object

    with pytest.raises(ConfigError, match="field 'either': no Foundry stream type"):
        stream_schema(Ambiguous)
    with pytest.raises(ConfigError, match="field 'thing'"):
        stream_schema(Opaque)
