"""Paths and schemas shared by the stream tests."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.conftest import Admin


def field(name: str, type_: str, nullable: bool = True, **extra: Any) -> dict[str, Any]:
    return {"name": name, "schema": {"nullable": nullable, "dataType": {"type": type_, **extra}}}


SCHEMA: dict[str, Any] = {"fields": [field("id", "long", nullable=False), field("name", "string")]}


def v2(rid: str, branch: str = "master", suffix: str = "", base: str = "/api") -> str:
    return f"{base}/v2/streams/datasets/{rid}/streams/{quote(branch, safe='')}{suffix}"


def hs(rid: str, branch: str = "master", suffix: str = "", base: str = "/api") -> str:
    return f"{base}/v2/highScale/streams/datasets/{rid}/streams/{quote(branch, safe='')}{suffix}"


def sub(rid: str, subscriber_id: str, action: str, branch: str = "master") -> str:
    return hs(rid, branch, f"/subscribers/{quote(subscriber_id, safe='')}/{action}")


PREVIEW = {"preview": "true"}


async def make_stream(
    admin: Admin, name: str = "s", schema: dict[str, Any] | None = SCHEMA, partitions: int = 1, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"partitions": partitions, **extra}
    if schema is not None:
        body["schema"] = schema
    return await admin.create("stream", name, **body)


async def publish(admin: Admin, rid: str, records: list[Any], token: str | None = None) -> tuple[int, Any]:
    return await admin.call("POST", hs(rid, suffix="/publishRecords"), token, json={"records": records})


async def get_records(
    admin: Admin, rid: str, partition: int = 0, start: int = 0, limit: int = 100, token: str | None = None
) -> tuple[int, Any]:
    params = {"partitionId": str(partition), "startOffset": str(start), "limit": str(limit), **PREVIEW}
    return await admin.call("GET", hs(rid, suffix="/getRecords"), token, params=params)


async def end_offsets(admin: Admin, rid: str, token: str | None = None) -> Any:
    status, body = await admin.call("GET", hs(rid, suffix="/getEndOffsets"), token, params=PREVIEW)
    assert status == 200, body
    return body


def assert_envelope(body: Any, error_name: str, error_code: str) -> None:
    assert isinstance(body, dict), body
    assert body["errorName"] == error_name, body
    assert body["errorCode"] == error_code, body
    assert isinstance(body["errorInstanceId"], str) and body["errorInstanceId"]
    assert isinstance(body["parameters"], dict)
