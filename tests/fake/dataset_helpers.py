"""Shared helpers for the dataset tests: Parquet bytes, and raw calls to the fake's Datasets API."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import Admin

API = "/api/v2/datasets"


def table(start: int, n: int) -> pa.Table:
    """Rows `start..start+n` of a two-column table: easy to check for order, gaps and duplicates."""
    return pa.table(
        {"id": pa.array(range(start, start + n), pa.int64()), "name": [f"n{i}" for i in range(start, start + n)]}
    )


def parquet_bytes(table: pa.Table, row_group_size: int | None = None) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=row_group_size)
    return sink.getvalue()


def ds(rid: str, *segments: str) -> str:
    """The URL path of a dataset resource, with every segment percent-encoded like the SDK does."""
    return "/".join([API, rid, *(quote(s, safe="") for s in segments)])


async def open_txn(admin: Admin, rid: str, type_: str = "APPEND", branch: str | None = None) -> str:
    params = {"branchName": branch} if branch else {}
    status, body = await admin.call("POST", ds(rid, "transactions"), json={"transactionType": type_}, params=params)
    assert status == 200, body
    assert body["status"] == "OPEN" and body["transactionType"] == type_
    return str(body["rid"])


async def close_txn(admin: Admin, rid: str, txn: str, action: str = "commit") -> dict[str, Any]:
    status, body = await admin.call("POST", ds(rid, "transactions", txn, action))
    assert status == 200, body
    assert isinstance(body, dict)
    return body


async def upload(admin: Admin, rid: str, path: str, data: bytes, token: str | None = None, **params: str) -> Any:
    status, body = await admin.call(
        "POST",
        ds(rid, "files", path, "upload"),
        token,
        data=data,
        params=params,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert status == 200, body
    return body


async def write_table(admin: Admin, rid: str, type_: str, tables: dict[str, pa.Table]) -> str:
    """One committed transaction of `type_` holding each table as a Parquet file."""
    txn = await open_txn(admin, rid, type_)
    for path, table in tables.items():
        await upload(admin, rid, path, parquet_bytes(table), transactionRid=txn)
    await close_txn(admin, rid, txn)
    return txn


async def read_table(admin: Admin, rid: str, token: str | None = None, **params: Any) -> pa.Table:
    status, body = await admin.call("GET", ds(rid, "readTable"), token, params={"format": "ARROW", **params})
    assert status == 200, body
    assert isinstance(body, bytes)
    return pa.ipc.open_stream(body).read_all()


async def list_files(admin: Admin, rid: str, **params: Any) -> list[str]:
    status, body = await admin.call("GET", ds(rid, "files"), params=params)
    assert status == 200, body
    return [f["path"] for f in body["data"]]
