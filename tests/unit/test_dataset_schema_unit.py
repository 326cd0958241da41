"""Foundry dataset schemas: the Arrow mapping, and when a DatasetOutput puts one (aioresponses)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import time
from typing import Any

import pyarrow as pa
import pytest
from aioresponses import aioresponses
from foundry_sdk.v2.core.models import DatasetSchema
from pydantic import BaseModel
from structlog.testing import capture_logs

from framework._datasets.handles import DatasetOutput
from framework._datasets.schema import foundry_dataset_schema
from framework._errors import ConfigError
from framework._handles import AckTracker
from framework._http import FoundryClient, RetryPolicy

from .dataset_mocks import Foundry, bind

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def retry_policy() -> RetryPolicy:
    return RetryPolicy(max_attempts=1)


@pytest.fixture
def foundry() -> Iterator[Foundry]:
    with aioresponses() as m:
        yield Foundry(m)


def col(name: str, type_: str, nullable: bool = True, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "name": name, "nullable": nullable, **extra}


def elem(type_: str, nullable: bool = True, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "nullable": nullable, **extra}


# Mapping


def test_every_supported_arrow_type_maps_to_the_sdk_field_type() -> None:
    schema = pa.schema(
        [
            pa.field("i8", pa.int8(), nullable=False),
            ("i16", pa.int16()),
            ("i32", pa.int32()),
            ("i64", pa.int64()),
            ("f32", pa.float32()),
            ("f64", pa.float64()),
            ("flag", pa.bool_()),
            ("s", pa.string()),
            ("ls", pa.large_string()),
            ("b", pa.binary()),
            ("lb", pa.large_binary()),
            ("d", pa.date32()),
            ("d64", pa.date64()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("ts_naive_ns", pa.timestamp("ns")),
            ("dec", pa.decimal128(12, 3)),
            ("tags", pa.list_(pa.field("item", pa.string(), nullable=False))),
            ("big_list", pa.large_list(pa.int64())),
            ("attrs", pa.map_(pa.string(), pa.field("value", pa.float64(), nullable=True))),
            ("point", pa.struct([pa.field("x", pa.float64(), nullable=False), ("tags", pa.list_(pa.int32()))])),
            ("cat", pa.dictionary(pa.int32(), pa.string())),
        ]
    )
    assert foundry_dataset_schema(schema) == {
        "fieldSchemaList": [
            col("i8", "BYTE", nullable=False),
            col("i16", "SHORT"),
            col("i32", "INTEGER"),
            col("i64", "LONG"),
            col("f32", "FLOAT"),
            col("f64", "DOUBLE"),
            col("flag", "BOOLEAN"),
            col("s", "STRING"),
            col("ls", "STRING"),
            col("b", "BINARY"),
            col("lb", "BINARY"),
            col("d", "DATE"),
            col("d64", "DATE"),
            col("ts", "TIMESTAMP"),
            col("ts_naive_ns", "TIMESTAMP"),
            col("dec", "DECIMAL", precision=12, scale=3),
            col("tags", "ARRAY", arraySubtype=elem("STRING", nullable=False)),
            col("big_list", "ARRAY", arraySubtype=elem("LONG")),
            col("attrs", "MAP", mapKeyType=elem("STRING", nullable=False), mapValueType=elem("DOUBLE")),
            col(
                "point",
                "STRUCT",
                subSchemas=[col("x", "DOUBLE", nullable=False), col("tags", "ARRAY", arraySubtype=elem("INTEGER"))],
            ),
            col("cat", "STRING"),
        ]
    }


def test_mapping_round_trips_through_the_sdk_model() -> None:
    """Names, casing and nesting exactly as foundry_sdk's DatasetSchema (de)serializes them."""
    nested = pa.struct([("m", pa.map_(pa.string(), pa.list_(pa.decimal128(5, 2)))), ("when", pa.date32())])
    schema = pa.schema([("id", pa.int64()), ("deep", pa.list_(nested))])
    ours = foundry_dataset_schema(schema)
    assert DatasetSchema.model_validate(ours).to_dict() == ours


@pytest.mark.parametrize(
    ("type_", "column"),
    [
        (pa.uint32(), "bad"),
        (pa.float16(), "bad"),
        (pa.time64("us"), "bad"),
        (pa.duration("s"), "bad"),
        (pa.null(), "bad"),
        (pa.decimal256(40, 2), "bad"),
        (pa.list_(pa.uint8()), "bad[]"),
        (pa.map_(pa.string(), pa.time32("s")), "bad{value}"),
        (pa.struct([("inner", pa.uint64())]), "bad.inner"),
    ],
)
def test_unsupported_types_raise_naming_the_column(type_: pa.DataType, column: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"column '{column}'")):
        foundry_dataset_schema(pa.schema([("ok", pa.int64()), ("bad", type_)]))


def test_duplicate_columns_raise_naming_the_column() -> None:
    with pytest.raises(ConfigError, match="column 'a' appears more than once"):
        foundry_dataset_schema(pa.schema([("a", pa.int64()), ("b", pa.int64()), ("a", pa.string())]))


class WithTime(BaseModel):
    id: int
    at: time  # time64: Foundry dataset schemas have no time type


def test_a_declared_schema_foundry_cannot_type_fails_at_declaration() -> None:
    with pytest.raises(ConfigError, match=r"column 'at'.*put_schema=False"):
        DatasetOutput("out", model=WithTime)
    DatasetOutput("out", model=WithTime, put_schema=False)  # opting out writes it as before


# When the output puts it


class Item(BaseModel):
    id: int
    name: str


ITEM_SCHEMA = {"fieldSchemaList": [col("id", "LONG", nullable=False), col("name", "STRING", nullable=False)]}


async def test_schema_is_put_after_the_first_commit_then_only_when_it_changes(
    client: FoundryClient, foundry: Foundry
) -> None:
    out = bind(DatasetOutput("out", model=Item), client)
    await out.write_table([Item(id=1, name="a")])
    await out.write_table([Item(id=2, name="b")], mode="snapshot")
    await out.append([Item(id=3, name="c")])
    await out.flush()
    assert foundry.kinds().count("commit") == 3
    ((after, body),) = foundry.schema_puts  # once: the schema never changed
    assert foundry.events[after - 1] == ("commit", "ri.foundry.main.transaction.1")  # after that commit
    assert body == {
        "schema": ITEM_SCHEMA,
        "branchName": "master",
        "dataframeReader": "PARQUET",
        "endTransactionRid": "ri.foundry.main.transaction.1",
    }


async def test_a_changed_schema_is_put_again(client: FoundryClient, foundry: Foundry) -> None:
    out = bind(DatasetOutput("out"), client)  # no declared schema: it follows what is written
    await out.write_table(pa.table({"x": [1]}))
    await out.write_table(pa.table({"x": [2]}))
    await out.write_table(pa.table({"x": [3], "y": ["new column"]}))
    await out.write_table(pa.table({"x": [4]}))  # an append without `y`: the dataset still has it
    await out.write_table(pa.table({"x": [5]}), mode="snapshot")  # a snapshot replaces everything
    assert foundry.schemas() == [
        {"fieldSchemaList": [col("x", "LONG")]},
        {"fieldSchemaList": [col("x", "LONG"), col("y", "STRING")]},
        {"fieldSchemaList": [col("x", "LONG")]},
    ]
    assert [body["endTransactionRid"] for _, body in foundry.schema_puts] == [
        "ri.foundry.main.transaction.1",
        "ri.foundry.main.transaction.3",
        "ri.foundry.main.transaction.5",
    ]


async def test_a_failed_put_does_not_fail_the_ack_and_is_retried_on_the_next_commit(
    client: FoundryClient, foundry: Foundry
) -> None:
    foundry.schema_status = 400
    out = bind(DatasetOutput("out", model=Item), client)
    tracker = AckTracker()
    with capture_logs() as logs:
        with tracker.active():
            await out.append([Item(id=1, name="a")])
        await out.flush()  # does not raise either
        await asyncio.wait_for(tracker.wait(), 5)  # the committed rows are acknowledged
    assert foundry.kinds() == ["create", "upload", "commit"] and len(foundry.schema_puts) == 1
    (error,) = [e for e in logs if e["log_level"] == "error"]
    assert error["event"].startswith("putSchema failed") and error["error_name"] == "SchemaBoom"
    assert error["transaction"] == "ri.foundry.main.transaction.1"

    foundry.schema_status = 200
    await out.append([Item(id=2, name="b")])
    await out.flush()
    await out.append([Item(id=3, name="c")])
    await out.flush()
    assert foundry.schemas() == [ITEM_SCHEMA, ITEM_SCHEMA]  # retried once after the next commit, then done
    assert foundry.schema_puts[1][1]["endTransactionRid"] == "ri.foundry.main.transaction.2"


async def test_acks_resolve_before_the_schema_put_returns(client: FoundryClient, foundry: Foundry) -> None:
    foundry.schema_gate = asyncio.Event()
    out = bind(DatasetOutput("out", model=Item, flush_rows=1), client)
    tracker = AckTracker()
    with tracker.active():
        await out.append([Item(id=1, name="a")])  # flushed in the background
    await asyncio.wait_for(tracker.wait(), 5)
    assert len(foundry.schema_puts) == 1  # the put is still waiting at the gate
    foundry.schema_gate.set()
    await out.flush()
    assert out._schemas.put == ITEM_SCHEMA


async def test_raw_file_transactions_put_no_schema(client: FoundryClient, foundry: Foundry) -> None:
    out = bind(DatasetOutput("out"), client)
    async with out.transaction() as tx:
        await tx.upload_file("notes/readme.txt", b"hello")
        await tx.upload_file("data.csv", b"a,b\n1,2\n")
    assert foundry.kinds() == ["create", "upload", "upload", "commit"] and foundry.schema_puts == []

    async with out.transaction() as tx:  # tables plus a raw file: the tables' schema
        await tx.upload_file("_SUCCESS", b"")
        await tx.write_table(pa.table({"x": [1]}))
    assert foundry.schemas() == [{"fieldSchemaList": [col("x", "LONG")]}]


async def test_put_schema_false_never_puts(client: FoundryClient, foundry: Foundry) -> None:
    out = bind(DatasetOutput("out", put_schema=False), client)
    await out.write_table(pa.table({"x": [1], "t": pa.array([1], pa.uint32())}), mode="snapshot")
    await out.append([{"x": 2}])
    await out.flush()
    assert foundry.kinds().count("commit") == 2 and foundry.schema_puts == []


async def test_a_table_foundry_cannot_type_aborts_before_uploading(client: FoundryClient, foundry: Foundry) -> None:
    out = bind(DatasetOutput("out"), client)
    with pytest.raises(ConfigError, match="column 't'"):
        await out.write_table(pa.table({"x": [1], "t": pa.array([1], pa.uint32())}))
    assert foundry.kinds() == ["create", "abort"]

    with pytest.raises(ConfigError, match="disagree on column types"):
        async with out.transaction() as tx:
            await tx.write_table(pa.table({"x": [1]}))
            await tx.write_table(pa.table({"x": ["one"]}))
    assert foundry.kinds()[-1] == "abort" and foundry.kinds().count("upload") == 1
    assert foundry.schema_puts == []


async def test_an_append_that_changes_a_column_type_puts_the_new_type(client: FoundryClient, foundry: Foundry) -> None:
    """Never raised after the commit: the rows are in, only the schema's choice is left."""
    out = bind(DatasetOutput("out"), client)
    await out.write_table(pa.table({"x": [1], "d": pa.array([1], pa.decimal128(38, 0))}))
    with capture_logs() as logs:
        # Together these decimals widen to precision 48, past Foundry's 38: the new type wins.
        await out.write_table(pa.table({"x": [2], "d": pa.array([1], pa.decimal128(38, 10))}))
        await out.write_table(pa.table({"x": ["two"]}))  # int -> string cannot unify: the new type wins, `d` stays
        await out.write_table(pa.table({"x": ["three"]}))  # unchanged: no put
    decimal = col("d", "DECIMAL", precision=38, scale=10)
    assert foundry.schemas() == [
        {"fieldSchemaList": [col("x", "LONG"), col("d", "DECIMAL", precision=38, scale=0)]},
        {"fieldSchemaList": [col("x", "LONG"), decimal]},
        {"fieldSchemaList": [col("x", "STRING"), decimal]},
    ]
    warnings = [e["event"] for e in logs if e["log_level"] == "warning"]
    assert warnings == ["column types changed since the last append; the schema follows the new ones"] * 2
