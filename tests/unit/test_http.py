"""FoundryClient against aioresponses: auth, retries, typed errors, params, uploads, streaming."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aioresponses import CallbackResult, aioresponses
from yarl import URL

import framework._logging as flog
from framework._env.environment import Environment, RuntimeSettings
from framework._errors import (
    BadRequestError,
    FoundryError,
    NotFoundError,
    PermissionDeniedError,
    RetryableError,
    UnauthorizedError,
)
from framework._http import FoundryClient, ParamValue, RetryPolicy, encode_params
from framework._logging import configure_logging

from .stream_mocks import envelope

API = "http://foundry.test/api"
FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.001, max_backoff_s=0.005)


@pytest.fixture
def retry_policy() -> RetryPolicy:
    return FAST


@pytest.fixture
def env(tmp_path: Path) -> Environment:
    token = tmp_path / "token"
    token.write_text("tok-first\n")
    return Environment(
        token_path=token,
        alias_map_path=tmp_path / "aliases.json",
        aliases={},
        api_base=API,
        stream_proxy_base="http://foundry.test/stream-proxy/api",
        ca_path=None,
        runtime=RuntimeSettings.load({}),
    )


def calls(m: aioresponses, method: str, url: str) -> list[Any]:
    return list(m.requests.get((method, URL(url)), []))


async def test_json_with_bearer_token(client: FoundryClient, mock: aioresponses) -> None:
    mock.get(f"{API}/v2/streams/x", payload={"ok": 1})
    assert await client.request_json("GET", "/v2/streams/x") == {"ok": 1}
    (call,) = calls(mock, "GET", f"{API}/v2/streams/x")
    assert call.kwargs["headers"]["Authorization"] == "Bearer tok-first"
    assert client.metrics.requests == 1 and client.metrics.by_status[200] == 1


async def test_url_services(client: FoundryClient) -> None:
    assert client.url("/v2/a") == f"{API}/v2/a"
    assert client.url("/streams/r", "stream_proxy") == "http://foundry.test/stream-proxy/api/streams/r"


async def test_empty_and_non_json_bodies(client: FoundryClient, mock: aioresponses) -> None:
    mock.post(f"{API}/publish", status=204)
    mock.get(f"{API}/raw", body=b"\x00\x01", content_type="application/octet-stream")
    mock.get(f"{API}/bytes", body=b"abc", content_type="application/octet-stream")
    assert await client.request_json("POST", "/publish", json={"records": []}) is None
    assert await client.request_json("GET", "/raw") == b"\x00\x01"
    assert await client.request_bytes("GET", "/bytes") == b"abc"
    (call,) = calls(mock, "POST", f"{API}/publish")
    assert call.kwargs["json"] == {"records": []}


async def test_percent_encoded_path_kept(client: FoundryClient, mock: aioresponses) -> None:
    url = f"{API}/v2/datasets/ri.d/files/a%2Fb.parquet/content"
    mock.get(url, body=b"x")
    assert await client.request_bytes("GET", "/v2/datasets/ri.d/files/a%2Fb.parquet/content") == b"x"


def test_params_encoding() -> None:
    params: dict[str, ParamValue] = {
        "preview": True,
        "autoCommit": False,
        "limit": 10,
        "columns": ["a", "b"],
        "skip": None,
        "s": "x",
    }
    assert encode_params(params) == [
        ("preview", "true"),
        ("autoCommit", "false"),
        ("limit", "10"),
        ("columns", "a"),
        ("columns", "b"),
        ("s", "x"),
    ]


async def test_params_sent(client: FoundryClient, mock: aioresponses) -> None:
    mock.get(re.compile(rf"^{re.escape(API)}/read\?.*"), payload=[])
    await client.request_json("GET", "/read", params={"preview": True, "columns": ["a", "b"], "limit": 5})
    ((_, url),) = mock.requests.keys()
    assert sorted(url.query.getall("columns")) == ["a", "b"]
    assert url.query["preview"] == "true" and url.query["limit"] == "5"


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 429},
        {"status": 503},
        {"status": 500},
        {"status": 502, "body": "<html>bad gateway</html>"},
        {"exception": aiohttp.ServerDisconnectedError()},
        {
            "exception": aiohttp.ClientConnectorError(
                aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None), OSError(111, "refused")
            )
        },
        {"exception": TimeoutError()},
    ],
)
async def test_retries_then_succeeds(client: FoundryClient, mock: aioresponses, failure: dict[str, Any]) -> None:
    url = f"{API}/v2/x"
    mock.get(url, **failure)
    mock.get(url, **failure)
    mock.get(url, payload={"ok": True})
    assert await client.request_json("GET", "/v2/x") == {"ok": True}
    assert len(calls(mock, "GET", url)) == 3
    assert client.metrics.retries == 2


async def test_retries_exhausted(client: FoundryClient, mock: aioresponses) -> None:
    url = f"{API}/v2/x"
    mock.get(url, status=503, payload=envelope(503, "Unavailable"), repeat=True)
    with pytest.raises(RetryableError) as info:
        await client.request_json("GET", "/v2/x")
    assert info.value.status == 503 and info.value.error_name == "Unavailable"
    assert len(calls(mock, "GET", url)) == FAST.max_attempts


async def test_connection_fault_exhausted_reraises(client: FoundryClient, mock: aioresponses) -> None:
    mock.get(f"{API}/v2/x", exception=aiohttp.ServerDisconnectedError(), repeat=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.request_json("GET", "/v2/x")
    assert client.metrics.connection_errors == FAST.max_attempts


@pytest.mark.parametrize(
    ("status", "name", "cls"),
    [
        (400, "RecordDoesNotMatchStreamSchema", BadRequestError),
        (403, "PublishRecordsToStreamPermissionDenied", PermissionDeniedError),
        (404, "StreamNotFound", NotFoundError),
        (409, "OpenTransactionAlreadyExists", FoundryError),
    ],
)
async def test_no_retry_on_client_errors(
    client: FoundryClient, mock: aioresponses, status: int, name: str, cls: type[FoundryError]
) -> None:
    url = f"{API}/v2/streams/ri.s"
    mock.post(re.compile(rf"^{re.escape(url)}.*"), status=status, payload=envelope(status, name, datasetRid="ri.s"))
    with pytest.raises(cls) as info:
        await client.request_json("POST", "/v2/streams/ri.s", params={"token": "query-secret"}, json={})
    err = info.value
    assert err.status == status and err.error_name == name and err.parameters == {"datasetRid": "ri.s"}
    assert err.method == "POST" and err.url == url and "query-secret" not in str(err)
    assert sum(len(v) for v in mock.requests.values()) == 1 and client.metrics.retries == 0


async def test_non_envelope_error_body(client: FoundryClient, mock: aioresponses) -> None:
    mock.get(f"{API}/x", status=404, body="nothing here", content_type="text/plain")
    with pytest.raises(NotFoundError) as info:
        await client.request_json("GET", "/x")
    assert info.value.error_name == "HTTP404" and info.value.parameters == {"body": "nothing here"}


async def test_401_rereads_token_once(client: FoundryClient, mock: aioresponses, env: Environment) -> None:
    url = f"{API}/v2/x"

    def rotate(_url: URL, **_kwargs: Any) -> CallbackResult:
        env.token_path.write_text("tok-second")
        return CallbackResult(status=401, payload=envelope(401, "Default:Unauthorized"))

    mock.get(url, callback=rotate)
    mock.get(url, payload={"ok": 1})
    mock.get(url, payload={"ok": 2})
    assert await client.request_json("GET", "/v2/x") == {"ok": 1}
    assert await client.request_json("GET", "/v2/x") == {"ok": 2}
    tokens = [c.kwargs["headers"]["Authorization"] for c in calls(mock, "GET", url)]
    assert tokens == ["Bearer tok-first", "Bearer tok-second", "Bearer tok-second"]
    assert client.metrics.token_refreshes == 1 and client.metrics.retries == 0


async def test_401_twice_raises(client: FoundryClient, mock: aioresponses) -> None:
    url = f"{API}/v2/x"
    mock.get(url, status=401, payload=envelope(401, "Default:Unauthorized"), repeat=True)
    with pytest.raises(UnauthorizedError) as info:
        await client.request_json("GET", "/v2/x")
    assert info.value.error_name == "Default:Unauthorized"
    assert len(calls(mock, "GET", url)) == 2


@pytest.mark.parametrize(
    ("header", "expected"), [("0.003", 0.003), ("100", 0.5), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)]
)
async def test_retry_after_honoured_and_capped(
    env: Environment, mock: aioresponses, header: str, expected: float
) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async with FoundryClient(env, retry=RetryPolicy(3, 0.001, 0.5)) as client:
        client._sleep = record
        mock.get(f"{API}/x", status=429, headers={"Retry-After": header})
        mock.get(f"{API}/x", payload=[])
        assert await client.request_json("GET", "/x") == []
    assert waits == [pytest.approx(expected)]


async def test_backoff_is_bounded(env: Environment, mock: aioresponses) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async with FoundryClient(env, retry=RetryPolicy(6, 0.01, 0.02)) as client:
        client._sleep = record
        mock.get(f"{API}/x", status=500, repeat=True)
        with pytest.raises(RetryableError):
            await client.request_json("GET", "/x")
    assert len(waits) == 5 and all(0 <= w <= 0.02 for w in waits)


async def test_upload_callable_body_retried(client: FoundryClient, mock: aioresponses) -> None:
    url = f"{API}/v2/datasets/ri.d/files/a.bin/upload"
    seen: list[bytes] = []
    invocations = 0

    def body() -> AsyncIterator[bytes]:
        nonlocal invocations
        invocations += 1

        async def gen() -> AsyncIterator[bytes]:
            yield b"hello "
            yield b"world"

        return gen()

    def record(status: int) -> Any:
        def callback(_url: URL, **kwargs: Any) -> CallbackResult:
            seen.append(kwargs["data"])
            assert kwargs["headers"]["Content-Type"] == "application/x-test"
            return CallbackResult(status=status, payload={"path": "a.bin"} if status == 200 else None)

        return callback

    mock.post(re.compile(rf"^{re.escape(url)}.*"), callback=record(503))
    mock.post(re.compile(rf"^{re.escape(url)}.*"), callback=record(200))
    result = await client.upload(
        "POST",
        "/v2/datasets/ri.d/files/a.bin/upload",
        body=body,
        params={"branchName": "master"},
        content_type="application/x-test",
    )
    assert result == {"path": "a.bin"}
    assert invocations == 2 and seen == [b"hello world", b"hello world"]


async def test_upload_bytes(client: FoundryClient, mock: aioresponses) -> None:
    mock.post(f"{API}/up", status=204)
    assert await client.upload("POST", "/up", body=b"raw") is None
    (call,) = calls(mock, "POST", f"{API}/up")
    assert call.kwargs["data"] == b"raw"


async def test_stream_download(client: FoundryClient, mock: aioresponses) -> None:
    mock.get(f"{API}/big", status=503)
    mock.get(f"{API}/big", body=b"0123456789", content_type="application/octet-stream")
    async with client.stream("GET", "/big") as resp:
        chunks = [chunk async for chunk in resp.content.iter_chunked(4)]
    assert b"".join(chunks) == b"0123456789"
    assert client.metrics.retries == 1


async def test_stream_error_is_typed(client: FoundryClient, mock: aioresponses) -> None:
    mock.get(f"{API}/big", status=404, payload=envelope(404, "FileNotFoundOnBranch"))
    with pytest.raises(NotFoundError, match="FileNotFoundOnBranch"):
        async with client.stream("GET", "/big"):
            pass


async def test_passed_session_is_not_closed(env: Environment, mock: aioresponses) -> None:
    mock.get(f"{API}/x", payload=1)
    async with aiohttp.ClientSession() as session:
        async with FoundryClient(env, retry=FAST, session=session) as client:
            assert await client.request_json("GET", "/x") == 1
        assert not session.closed


async def test_retry_logged_without_token(env: Environment, mock: aioresponses) -> None:
    out = io.StringIO()
    configure_logging("json", "INFO", stream=out)
    try:
        async with FoundryClient(env, retry=FAST) as client:
            for _ in range(3):  # three failures in a row of one request: an outage, logged as a warning
                mock.get(re.compile(rf"^{re.escape(API)}/v2/y.*"), status=503)
            mock.get(re.compile(rf"^{re.escape(API)}/v2/y.*"), payload={})
            await client.request_json("GET", "/v2/y", params={"q": "1"})
    finally:
        if flog._handler is not None:
            logging.getLogger().removeHandler(flog._handler)
            flog._handler = None
        structlog.reset_defaults()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert not [line for line in lines if line["event"] == "retrying Foundry request"]  # debug: transient
    retry = next(line for line in lines if line["event"].startswith("Foundry unavailable"))
    assert retry["level"] == "warning" and retry["method"] == "GET" and retry["path"] == "/v2/y"
    assert retry["status"] == 503
    assert any(line["event"].startswith("Foundry available again") for line in lines)
    assert "tok-first" not in out.getvalue()
