"""The fake's putSchema / getSchema: SDK shapes, body validation, and readTable following a put schema."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import foundry_sdk
import pyarrow as pa
import pytest
from foundry_sdk.v2.core import errors as core_errors

from fake_stream_proxy import FakeServer
from tests.conftest import Admin
from tests.fake.dataset_helpers import ds, read_table, table, write_table

T = TypeVar("T")


def field(name: str | None, type_: str, nullable: bool = True, **extra: Any) -> dict[str, Any]:
    return {**({"name": name} if name is not None else {}), "type": type_, "nullable": nullable, **extra}


ID_NAME = {"fieldSchemaList": [field("id", "LONG"), field("name", "STRING")]}


async def put(admin: Admin, rid: str, body: dict[str, Any]) -> tuple[int, Any]:
    return await admin.call("PUT", ds(rid, "putSchema"), json=body)


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ({}, "MissingFieldSchemaList"),
        ({"schema": {"fields": []}}, "MissingFieldSchemaList"),
        ({"schema": {"fieldSchemaList": [field("x", "TIME")]}}, "UnsupportedType"),
        ({"schema": {"fieldSchemaList": [{"name": "x", "type": "LONG"}]}}, "InvalidField"),  # nullable is required
        ({"schema": {"fieldSchemaList": [field(None, "LONG")]}}, "InvalidFieldName"),
        ({"schema": {"fieldSchemaList": [field("x", "ARRAY")]}}, "MissingNestedType"),
        ({"schema": {"fieldSchemaList": [field("x", "MAP", mapKeyType=field(None, "STRING"))]}}, "MissingNestedType"),
        ({"schema": {"fieldSchemaList": [field("x", "STRUCT", subSchemas=[field(None, "LONG")])]}}, "InvalidFieldName"),
        ({"schema": {"fieldSchemaList": [field("x", "ARRAY", arraySubtype=field(None, "NOPE"))]}}, "UnsupportedType"),
        ({"schema": {"fieldSchemaList": [field("x", "DECIMAL", precision=40, scale=2)]}}, "InvalidDecimal"),
        ({"schema": {"fieldSchemaList": [field("x", "LONG"), field("x", "STRING")]}}, "DuplicateFieldName"),
    ],
)
async def test_put_schema_rejects_invalid_bodies(admin: Admin, body: dict[str, Any], error_type: str) -> None:
    rid = (await admin.create("dataset", "d"))["rid"]
    await write_table(admin, rid, "SNAPSHOT", {"a.parquet": table(0, 2)})
    status, error = await put(admin, rid, body)
    assert status == 400 and error["errorName"] == "InvalidSchema", error
    assert error["parameters"]["errorType"] == error_type and error["parameters"]["message"]
    status, _ = await admin.call("GET", ds(rid, "getSchema"))
    assert status == 404  # nothing was stored


async def test_put_schema_rejects_a_bad_dataframe_reader(admin: Admin) -> None:
    rid = (await admin.create("dataset", "d"))["rid"]
    await write_table(admin, rid, "SNAPSHOT", {"a.parquet": table(0, 2)})
    status, error = await put(admin, rid, {"schema": ID_NAME, "dataframeReader": "EXCEL"})
    assert status == 400 and error["errorName"] == "Default:InvalidArgument"
    status, _ = await put(admin, rid, {"schema": ID_NAME, "dataframeReader": "PARQUET", "branchName": "master"})
    assert status == 200


async def test_read_table_follows_a_put_schema(admin: Admin) -> None:
    rid = (await admin.create("dataset", "d"))["rid"]
    await write_table(admin, rid, "SNAPSHOT", {"a.parquet": table(0, 3)})
    assert (await read_table(admin, rid)).column_names == ["id", "name"]  # no schema: inferred from the file

    # Reordered, `id` narrowed to INTEGER, a column the files lack, and `name` dropped.
    schema = {"fieldSchemaList": [field("extra", "DOUBLE"), field("id", "INTEGER", nullable=False)]}
    status, body = await put(admin, rid, {"schema": schema})
    assert status == 200, body
    got = await read_table(admin, rid)
    assert got.schema == pa.schema([("extra", pa.float64()), pa.field("id", pa.int32(), nullable=False)])
    assert got.column("id").to_pylist() == [0, 1, 2] and got.column("extra").null_count == 3
    assert (await read_table(admin, rid, columns="extra")).column_names == ["extra"]
    status, error = await admin.call("GET", ds(rid, "readTable"), params={"format": "ARROW", "columns": "name"})
    assert status == 400 and "name" in error["parameters"]["message"]  # not in the schema any more


def sdk(fake: FakeServer) -> Any:
    client = foundry_sdk.FoundryClient(
        auth=foundry_sdk.UserTokenAuth(fake.admin_token),
        hostname=f"127.0.0.1:{fake.port}",
        config=foundry_sdk.Config(scheme="http"),
    )
    return client.datasets.Dataset


async def run(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


async def test_sdk_puts_and_gets_a_nested_schema(fake: FakeServer, admin: Admin) -> None:
    rid = (await admin.create("dataset", "d"))["rid"]
    first = await write_table(admin, rid, "SNAPSHOT", {"a.parquet": table(0, 2)})
    second = await write_table(admin, rid, "APPEND", {"b.parquet": table(2, 2)})
    nested = {
        "fieldSchemaList": [
            field("id", "LONG", nullable=False),
            field("name", "STRING"),
            field("price", "DECIMAL", precision=10, scale=2),
            field("tags", "ARRAY", arraySubtype=field(None, "STRING")),
            field("attrs", "MAP", mapKeyType=field(None, "STRING", False), mapValueType=field(None, "DOUBLE")),
            field("where", "STRUCT", subSchemas=[field("lat", "DOUBLE"), field("at", "TIMESTAMP")]),
        ]
    }
    ds_ = sdk(fake)
    put_v1 = await run(lambda: ds_.put_schema(rid, schema=ID_NAME, end_transaction_rid=first))
    put_v2 = await run(lambda: ds_.put_schema(rid, schema=nested, branch_name="master", dataframe_reader="PARQUET"))
    assert put_v2.end_transaction_rid == second and put_v2.branch_name == "master"

    got = await run(lambda: ds_.get_schema(rid))
    assert got.version_id == put_v2.version_id != put_v1.version_id
    assert got.schema_.to_dict() == nested  # exactly what the SDK sent, parsed by its own model
    older = await run(lambda: ds_.get_schema(rid, end_transaction_rid=first))
    assert older.version_id == put_v1.version_id and older.schema_.to_dict() == ID_NAME
    by_version = await run(lambda: ds_.get_schema(rid, version_id=put_v1.version_id))
    assert by_version.schema_.to_dict() == ID_NAME

    with pytest.raises(core_errors.InvalidSchema) as invalid:  # the SDK lets a missing subtype through; we don't
        await run(lambda: ds_.put_schema(rid, schema={"fieldSchemaList": [field("t", "ARRAY")]}))
    assert invalid.value.parameters["errorType"] == "MissingNestedType"
