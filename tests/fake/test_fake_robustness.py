"""Robustness of the fake itself: hostile bodies and numbers are 400s, stalled requests end, state is private."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import aiohttp
import pytest

from fake_stream_proxy import FakeServer
from tests.conftest import Admin
from tests.fake.stream_helpers import PREVIEW, assert_envelope, hs, make_stream, publish, sub, v2

DEEP = b"[" * 100_000 + b"]" * 100_000
INVALID_UTF8 = b'{"records": [{"id": 1, "name": "\xff\xfe"}]}'


@pytest.mark.parametrize(("raw", "says"), [(INVALID_UTF8, "UTF-8"), (DEEP, "deeply")], ids=["utf8", "deep"])
async def test_malformed_bodies_are_400_everywhere(admin: Admin, raw: bytes, says: str) -> None:
    stream = await make_stream(admin)
    rid, view = stream["rid"], stream["viewRid"]
    for path in (
        hs(rid, suffix="/publishRecords"),
        f"/stream-proxy/api/streams/{rid}/branches/master/jsonRecord",
        f"/stream-proxy/api/streams/{rid}/views/{view}/jsonRecords",
        "/_fake/resources",
    ):
        status, body = await admin.call("POST", path, data=raw, headers={"Content-Type": "application/json"})
        assert status == 400, (path, body)
        assert_envelope(body, "InvalidRequestBody", "INVALID_ARGUMENT")
        assert says in body["parameters"]["message"]


async def test_offsets_and_limits_outside_int64_are_400(admin: Admin) -> None:
    stream = await make_stream(admin)
    rid, view = stream["rid"], stream["viewRid"]
    huge = str(2**70)
    calls = [
        (hs(rid, suffix="/getRecords"), {"partitionId": "0", "startOffset": huge, **PREVIEW}),
        (hs(rid, suffix="/getRecords"), {"partitionId": "0", "limit": huge, **PREVIEW}),
        (f"/stream-proxy/api/streams/{rid}/views/{view}/partition/0/recordsV2", {"startOffset": huge}),
        (f"/stream-proxy/api/streams/{rid}/views/{view}/partition/0/recordsV2", {"offset": huge}),
        (f"/stream-proxy/api/streams/{rid}/branches/master/records", {"limit": huge}),
    ]
    for path, params in calls:
        status, body = await admin.call("GET", path, params=params)
        assert status == 400, (path, params, body)
        assert_envelope(body, "Default:InvalidArgument", "INVALID_ARGUMENT")
        assert "9223372036854775807" in body["parameters"]["message"]
    await publish(admin, rid, [{"id": 1}])
    assert (await admin.call("POST", v2(rid, suffix="/subscribers"), params=PREVIEW, json={"subscriberId": "s"}))[
        0
    ] == 200
    for action, body_ in (
        ("commitOffsets", {"offsets": {"0": 2**70}}),
        ("resetOffsets", {"position": {"type": "specific", "offsets": {"0": 2**70}}}),
    ):
        status, body = await admin.call("POST", sub(rid, "s", action), params=PREVIEW, json=body_)
        assert status == 400, (action, body)


async def test_a_stalled_body_is_answered_408_and_frees_the_handler(tmp_path: Path) -> None:
    async with FakeServer(tmp_path / "state", read_timeout_s=0.3, https_port=None) as fake:
        reader, writer = await asyncio.open_connection(fake.host, fake.port)
        writer.write(
            b"POST /_fake/resources HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + fake.admin_token.encode() + b'\r\nContent-Length: 100\r\n\r\n{"ty'
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"RequestTimeout" in answer


async def test_stalled_headers_are_closed(tmp_path: Path) -> None:
    async with FakeServer(tmp_path / "state", read_timeout_s=0.3, https_port=None) as fake:
        reader, writer = await asyncio.open_connection(fake.host, fake.port)
        writer.write(b"GET /_fake/health HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, never answered
        writer.close()


async def test_a_slow_but_moving_body_is_not_cut_off(tmp_path: Path) -> None:
    async with FakeServer(tmp_path / "state", read_timeout_s=0.3, https_port=None) as fake:
        reader, writer = await asyncio.open_connection(fake.host, fake.port)
        body = b'{"inputs": {}, "outputs": {}}'
        writer.write(
            b"POST /_fake/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Authorization: Bearer " + fake.admin_token.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        for i in range(0, len(body), 6):  # ~1 s in all, never 0.3 s without a byte
            writer.write(body[i : i + 6])
            await writer.drain()
            await asyncio.sleep(0.15)
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer


async def test_state_dir_and_database_are_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    old = os.umask(0o022)
    try:
        async with FakeServer(state, https_port=None) as fake, aiohttp.ClientSession() as session:
            await Admin(fake, session).job({}, {})  # a token in the database, and WAL traffic
            files = [
                state / "fake-foundry.sqlite3",
                state / "fake-foundry.sqlite3-wal",
                state / "fake-foundry.sqlite3-shm",
            ]
            for path in files:
                assert path.exists(), path
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
            assert stat.S_IMODE(state.stat().st_mode) == 0o700
            assert stat.S_IMODE((state / "blobs").stat().st_mode) == 0o700
    finally:
        os.umask(old)
