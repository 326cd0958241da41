"""Dataset schemas end to end: what DatasetOutput and the stream archiver put, read back by the official SDK.

Real Foundry cannot read API-uploaded Parquet as a table until a schema is put; these tests prove our
outputs put one the SDK parses, and that the fake's readTable then follows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import foundry_sdk
import pyarrow as pa
import pytest
from pydantic import BaseModel

from connectors.stream_archiver import ArchivedEvent, StreamArchiver
from fake_stream_proxy import FakeServer
from framework._datasets.arrow import schema_for
from framework._datasets.handles import DatasetOutput
from framework._datasets.schema import foundry_dataset_schema
from framework.testing import FakeFoundry
from tests.conftest import Admin

from .bound_handles import job_env
from .test_stream_archiver_e2e import archive_setup, events, expected, rows

pytestmark = pytest.mark.timeout(60)
T = TypeVar("T")


class Place(BaseModel):
    lat: float
    label: str | None = None


class Order(BaseModel):
    id: int
    day: date
    at: datetime
    total: float | None
    tags: list[str]
    attrs: dict[str, int]
    place: Place


def orders(start: int, stop: int) -> list[Order]:
    return [
        Order(id=i, day=date(2024, 1, 1), at=datetime(2024, 1, 1, tzinfo=UTC), total=i * 1.5 if i % 2 else None,
              tags=[f"t{i}"], attrs={"n": i}, place=Place(lat=i / 10))
        for i in range(start, stop)
    ]  # fmt: skip


def col(name: str | None, type_: str, nullable: bool = False, **extra: Any) -> dict[str, Any]:
    return {**({"name": name} if name else {}), "type": type_, "nullable": nullable, **extra}


ORDER_SCHEMA = {
    "fieldSchemaList": [
        col("id", "LONG"),
        col("day", "DATE"),
        col("at", "TIMESTAMP"),
        col("total", "DOUBLE", nullable=True),
        col("tags", "ARRAY", arraySubtype=col(None, "STRING")),
        col("attrs", "MAP", mapKeyType=col(None, "STRING"), mapValueType=col(None, "LONG")),
        col("place", "STRUCT", subSchemas=[col("lat", "DOUBLE"), col("label", "STRING", nullable=True)]),
    ]
}


def sdk_datasets(port: int, token: str) -> Any:
    client = foundry_sdk.FoundryClient(
        auth=foundry_sdk.UserTokenAuth(token), hostname=f"127.0.0.1:{port}", config=foundry_sdk.Config(scheme="http")
    )
    return client.datasets.Dataset


async def run(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


async def get_schema(admin: Admin, rid: str) -> dict[str, Any]:
    status, body = await admin.call("GET", f"/api/v2/datasets/{quote(rid, safe='')}/getSchema")
    assert status == 200, body
    assert isinstance(body, dict)
    return body


async def test_write_table_puts_a_schema_the_sdk_reads(tmp_path: Path, fake: FakeServer, admin: Admin) -> None:
    rid = (await admin.create("dataset", "orders"))["rid"]
    writer = await admin.job(inputs={}, outputs={"orders": rid})
    reader = await admin.job(inputs={"orders": rid}, outputs={})
    status, _ = await admin.call("GET", f"/api/v2/datasets/{quote(rid, safe='')}/getSchema")
    assert status == 404  # uploaded data alone has no schema

    async with job_env(tmp_path, fake, writer) as job:
        out = job.bind(DatasetOutput("orders", model=Order))
        (written,) = await out.write_table(orders(0, 5), mode="snapshot")
        first = await get_schema(admin, rid)
        assert first["schema"] == ORDER_SCHEMA == foundry_dataset_schema(schema_for(Order))
        assert first["branchName"] == "master" and first["endTransactionRid"] == written.transaction_rid
        await out.write_table(orders(5, 8))  # same schema: not put again
        assert (await get_schema(admin, rid))["versionId"] == first["versionId"]

    datasets = sdk_datasets(fake.port, reader["token"])
    got = await run(lambda: datasets.get_schema(rid))
    assert got.version_id == first["versionId"] and got.schema_.to_dict() == ORDER_SCHEMA
    assert [f.type for f in got.schema_.field_schema_list] == ["LONG", "DATE", "TIMESTAMP", "DOUBLE", "ARRAY", "MAP",
                                                                "STRUCT"]  # fmt: skip
    table = (await run(lambda: datasets.read_table(rid, format="ARROW"))).to_pyarrow()
    assert table.schema == schema_for(Order) and sorted(table.column("id").to_pylist()) == list(range(8))
    assert table.sort_by("id").to_pylist()[1]["place"] == {"lat": 0.1, "label": None}


async def test_a_new_column_puts_a_new_schema_version(tmp_path: Path, fake: FakeServer, admin: Admin) -> None:
    rid = (await admin.create("dataset", "loose"))["rid"]
    info = await admin.job(inputs={}, outputs={"loose": rid})
    async with job_env(tmp_path, fake, info) as job:
        out = job.bind(DatasetOutput("loose", flush_rows=2))  # no declared schema: it follows the rows
        await out.append([{"id": 1, "price": Decimal("1.25")}, {"id": 2, "price": Decimal("2.50")}])
        await out.flush()
        v1 = await get_schema(admin, rid)
        await out.append([{"id": 3, "price": Decimal("3.75"), "note": "late"}, {"id": 4, "price": None}])
        await out.flush()
        v2 = await get_schema(admin, rid)
        table = await out.read_table()
    decimal = col("price", "DECIMAL", nullable=True, precision=3, scale=2)
    assert v1["schema"]["fieldSchemaList"] == [col("id", "LONG", nullable=True), decimal]
    assert v2["schema"]["fieldSchemaList"] == [*v1["schema"]["fieldSchemaList"], col("note", "STRING", True)]
    assert v2["versionId"] != v1["versionId"]
    assert table.column_names == ["id", "price", "note"] and table.column("note").to_pylist().count(None) == 3
    assert table.schema.field("price").type == pa.decimal128(3, 2)


async def test_stream_archiver_puts_the_event_schema(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        a = await archive_setup(foundry, partitions=2)
        await foundry.publish(a.events, events(0, 300))
        tuning = {"ARCHIVER_FLUSH_ROWS": "100", "CONNECTOR_READ_BATCH_SIZE": "100"}
        async with a.job.running(StreamArchiver, extra_env=tuning):
            await a.wait_committed()
        assert foundry.server is not None
        datasets = sdk_datasets(foundry.server.port, a.reader.token)
        got = await run(lambda: datasets.get_schema(a.dataset))
        log = (await a.job.provenance())["events"]  # in the order the fake applied them
        commits = [e["transactionRid"] for e in log if e["operation"] == "commitTransaction"]
        puts = [e for e in log if e["operation"] == "putSchema"]
        table = (await run(lambda: datasets.read_table(a.dataset, format="ARROW"))).to_pyarrow()

    assert got.schema_.to_dict() == {
        "fieldSchemaList": [
            col("id", "LONG"),
            col("name", "STRING"),
            col("value", "DOUBLE"),
            col("ts", "TIMESTAMP"),
            col("stream_partition", "STRING"),
            col("stream_offset", "LONG"),
        ]
    }
    assert got.branch_name == "master" and got.end_transaction_rid == commits[0]
    assert len(commits) >= 3 and len(puts) == 1  # put after the first commit only: the schema never changed
    assert puts[0]["dataframeReader"] == "PARQUET" and puts[0]["transactionRid"] == commits[0]
    assert table.schema == schema_for(ArchivedEvent) and rows(table) == expected(0, 300)
