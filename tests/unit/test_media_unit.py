"""Media set handles against aioresponses: MIME guessing, path checks, transactions, acks, streaming."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from framework import MediaItemPathError
from framework._env.environment import ResourceRef
from framework._errors import BadRequestError, ConfigError, ConnectorError, NotFoundError, PermissionDeniedError
from framework._handles import AckTracker
from framework._http import FoundryClient, RetryPolicy
from framework._io import upload_body
from framework._media.handles import MediaSetInput, MediaSetOutput, _transaction_id
from framework.testing import bind_handle

pytestmark = pytest.mark.timeout(30)

API = "http://foundry.test/api"
MS = "ri.mio.main.media-set.0000"
BASE = f"{API}/v2/mediasets/{MS}"
ITEM = "ri.mio.main.media-item.1111"


@pytest.fixture
def retry_policy() -> RetryPolicy:
    return RetryPolicy(max_attempts=1)


def bind(handle: Any, client: FoundryClient) -> Any:
    return bind_handle(handle, client.env, client, ref=ResourceRef(MS, "master"), connector_name="t")


class MediaFoundry:
    """Media endpoints on aioresponses that log every call in order."""

    def __init__(self, mock: aioresponses) -> None:
        self.mock = mock
        self.events: list[tuple[str, str]] = []
        self.content_types: dict[str, str] = {}
        self.fail_path: str | None = None
        self.tx_body: Any = "7d5b8f0e-0000-4000-8000-000000000001"
        mock.post(re.compile(rf"^{re.escape(BASE)}/transactions\?"), callback=self.create, repeat=True)
        mock.post(
            re.compile(rf"^{re.escape(BASE)}/transactions/[^/]+/(commit|abort)\?"), callback=self.end, repeat=True
        )
        mock.post(re.compile(rf"^{re.escape(BASE)}/items\?"), callback=self.upload, repeat=True)

    def create(self, url: URL, **kwargs: Any) -> CallbackResult:
        assert url.query["preview"] == "true" and url.query["branchName"] == "master"
        self.events.append(("create", ""))
        return CallbackResult(payload=self.tx_body)

    def end(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.events.append((url.path.split("/")[-1], url.path.split("/")[-2]))
        return CallbackResult(status=204)

    def upload(self, url: URL, **kwargs: Any) -> CallbackResult:
        path = url.query["mediaItemPath"]
        self.events.append(("upload", url.query.get("transactionId", "-")))
        self.content_types[path] = kwargs["headers"]["Content-Type"]
        if self.fail_path == path:
            return CallbackResult(status=400, payload={"errorCode": "INVALID_ARGUMENT", "errorName": "Boom"})
        return CallbackResult(payload={"mediaItemRid": f"{ITEM}-{len(self.events)}", "mediaSetViewRid": "v"})

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


@pytest.fixture
def media() -> Iterator[MediaFoundry]:
    with aioresponses() as m:
        yield MediaFoundry(m)


async def test_mime_type_guessed_from_path_unless_given(client: FoundryClient, media: MediaFoundry) -> None:
    out = bind(MediaSetOutput("out"), client)
    await out.upload("a/photo.JPG", b"1")
    await out.upload("a/doc.pdf", b"2")
    await out.upload("a/blob.unknownext", b"3")
    await out.upload("a/raw.png", b"4", mime_type="image/x-raw")
    assert media.content_types == {
        "a/photo.JPG": "image/jpeg",
        "a/doc.pdf": "application/pdf",
        "a/blob.unknownext": "application/octet-stream",
        "a/raw.png": "image/x-raw",
    }
    assert media.kinds() == ["upload"] * 4 and out.metrics.records == 4


async def test_path_too_long_or_empty_fails_before_any_request(client: FoundryClient, media: MediaFoundry) -> None:
    out = bind(MediaSetOutput("out"), client)
    with pytest.raises(MediaItemPathError, match="256 characters; Foundry allows at most 255"):
        await out.upload("x" * 256, b"data")
    with pytest.raises(MediaItemPathError, match="empty"):
        await out.upload("", b"data")
    assert isinstance(MediaItemPathError("x"), ValueError)
    await out.upload("x" * 255, b"data")  # the longest allowed path goes through
    assert media.kinds() == ["upload"]


async def test_transaction_commits_after_uploads_and_acks_wait_for_it(
    client: FoundryClient, media: MediaFoundry
) -> None:
    media.tx_body = {"transactionId": "tx-42"}  # the documented object form is read too
    out = bind(MediaSetOutput("out", transactional=True), client)
    tracker = AckTracker()
    with tracker.active():
        async with out.transaction() as tx:
            await out.upload("a.txt", b"a")
            await out.upload("b.txt", b"b")
            assert tx.id == "tx-42" and not any(a.done() for a in tracker.pending)
    await asyncio.wait_for(tracker.wait(), 5)
    assert media.events == [("create", ""), ("upload", "tx-42"), ("upload", "tx-42"), ("commit", "tx-42")]


async def test_failed_upload_aborts_transaction_and_fails_acks(client: FoundryClient, media: MediaFoundry) -> None:
    out = bind(MediaSetOutput("out", transactional=True), client)
    media.fail_path = "bad.txt"
    tracker = AckTracker()
    with tracker.active(), pytest.raises(ConnectorError, match="failed upload"):
        async with out.transaction():
            await out.upload("good.txt", b"a")
            with pytest.raises(BadRequestError):
                await out.upload("bad.txt", b"b")  # swallowed: the transaction must still abort
    assert media.kinds() == ["create", "upload", "upload", "abort"]
    with pytest.raises(ConnectorError):
        await tracker.wait()


async def test_transactional_upload_outside_a_block_gets_its_own_transaction(
    client: FoundryClient, media: MediaFoundry
) -> None:
    out = bind(MediaSetOutput("out", transactional=True), client)
    tx = "7d5b8f0e-0000-4000-8000-000000000001"
    tracker = AckTracker()
    with tracker.active():
        rid = await out.upload("a.txt", b"a")
    assert rid.startswith(ITEM) and tracker.pending[0].done()
    assert media.events == [("create", ""), ("upload", tx), ("commit", tx)]
    media.fail_path = "b.txt"
    with pytest.raises(BadRequestError):
        await out.upload("b.txt", b"b")
    assert media.kinds()[-2:] == ["upload", "abort"]


async def test_non_transactional_upload_acks_once_stored(client: FoundryClient, media: MediaFoundry) -> None:
    out = bind(MediaSetOutput("out"), client)
    tracker = AckTracker()
    with tracker.active():
        await out.upload("a.txt", b"a")
    assert len(tracker.pending) == 1 and tracker.pending[0].done()
    await tracker.wait()
    assert media.events == [("upload", "-")]


async def test_reads_by_path_and_rid_streamed(client: FoundryClient) -> None:
    data = bytes(range(256)) * 400  # aioresponses feeds the whole body at once: stay under its buffer limit
    reader = bind(MediaSetInput("in", chunk_bytes=8192), client)
    with aioresponses() as mock:
        by_path = re.compile(rf"^{re.escape(BASE)}/items/getRidByPath\?")
        mock.get(by_path, payload={"mediaItemRid": ITEM}, repeat=True)
        mock.get(f"{BASE}/items/{ITEM}/content", body=data, repeat=True)
        info = {"viewRid": "v", "path": "a.bin", "logicalTimestamp": 5, "mimeType": "x/y", "sizeBytesLong": len(data)}
        mock.get(f"{BASE}/items/{ITEM}", payload=info)
        assert await reader.get_rid("a.bin") == ITEM
        chunks = [c async for c in reader.open_item("a.bin")]
        assert b"".join(chunks) == data and max(map(len, chunks)) <= 8192 and len(chunks) >= 12
        assert await reader.read(ITEM) == data
        got = await reader.info(ITEM)
        assert (got.rid, got.path, got.mime_type, got.size_bytes, got.logical_timestamp) == (
            ITEM, "a.bin", "x/y", len(data), 5,
        )  # fmt: skip
        (call, *_) = next(v for k, v in mock.requests.items() if "getRidByPath" in str(k[1]))
        assert dict(call.kwargs["params"]) == {"mediaItemPath": "a.bin", "branchName": "master", "preview": "true"}


async def test_missing_path_and_check(client: FoundryClient) -> None:
    reader = bind(MediaSetInput("in"), client)
    with aioresponses() as mock:
        by_path = re.compile(rf"^{re.escape(BASE)}/items/getRidByPath\?")
        mock.get(by_path, payload={})
        with pytest.raises(NotFoundError, match="MediaItemNotFound"):
            await reader.read("nothing.png")
        mock.get(by_path, payload={})
        await reader.check()  # reachable: an unknown path is simply absent
        mock.get(by_path, status=403, payload={"errorCode": "PERMISSION_DENIED", "errorName": "Denied"})
        with pytest.raises(ConfigError, match="not reachable: Denied") as err:
            await reader.check()
        assert isinstance(err.value.__cause__, PermissionDeniedError)


def test_transaction_id_forms() -> None:
    assert _transaction_id("abc") == "abc"
    assert _transaction_id({"transactionId": "abc"}) == "abc"
    assert _transaction_id(b'"abc"') == "abc"
    with pytest.raises(ConnectorError):
        _transaction_id({"other": 1})


async def test_streamed_body_cannot_be_replayed(tmp_path: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"x"

    body = upload_body(chunks())
    assert callable(body)
    assert [c async for c in body()] == [b"x"]
    with pytest.raises(ConnectorError, match="cannot be replayed"):
        body()
    local = tmp_path / "f.bin"
    local.write_bytes(b"abc" * 1000)
    from_file = upload_body(local, chunk_bytes=1000)
    assert callable(from_file)
    for _ in range(2):  # a file is re-read on each attempt
        assert b"".join([c async for c in from_file()]) == local.read_bytes()


async def test_close_aborts_an_open_transaction(client: FoundryClient, media: MediaFoundry) -> None:
    out = bind(MediaSetOutput("out"), client)
    tracker = AckTracker()
    inside = asyncio.Event()

    async def writer() -> None:
        with tracker.active():
            async with out.transaction():
                await out.upload("a.txt", b"a")
                inside.set()
                await asyncio.sleep(0.2)

    task = asyncio.create_task(writer())
    await asyncio.wait_for(inside.wait(), 5)
    await out.close()
    with pytest.raises(ConnectorError, match="aborted"):
        await task
    with pytest.raises(ConnectorError, match="closed before"):
        await tracker.wait()
    assert media.kinds() == ["create", "upload", "abort"]  # aborted once, never committed
