"""Function mode without a server: schema inference, query and result handling, the runtime client's retries."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aioresponses import CallbackResult, aioresponses
from pydantic import BaseModel

from framework import ConfigError
from framework._functions import FunctionEnvironment, FunctionModule, JobContext, function
from framework._functions.client import RuntimeClient
from framework._functions.runner import FunctionRunner

BASE = "https://runtime.test:8443"
PREFIX = "/_emulate/foundry/compute-modules/runtimes/r1"


class Address(BaseModel):
    street: str
    zip: int | None = None


class Point(BaseModel):
    lat: float
    lon: float


class Geo(FunctionModule):
    @function
    async def geocode(self, ctx: JobContext, address: Address) -> Point:
        if address.street == "nowhere":
            raise LookupError("no such street")
        return Point(lat=len(address.street), lon=address.zip or 0)

    @function(name="add")
    def add_numbers(self, x: int, y: int = 1) -> int:
        return x + y

    @function
    async def count(self, ctx: JobContext, n: int) -> AsyncIterator[dict[str, int]]:
        for i in range(n):
            if i == 3 and n == 99:
                raise RuntimeError("stream broke")
            yield {"i": i}

    @function
    def squares(self, n: int) -> Iterator[int]:
        yield from (i * i for i in range(n))

    @function
    async def wrong(self, ctx: JobContext) -> int:
        return "not a number"  # type: ignore[return-value]

    @function
    async def when(self, day: datetime.date, tags: set[str], extra: dict[str, float]) -> list[datetime.datetime]:
        return []


def test_specs_follow_the_function_spec_shape() -> None:
    specs = {s["functionName"]: s for s in Geo.specs()}
    assert set(specs) == {"geocode", "add", "count", "squares", "wrong", "when"}
    geocode = specs["geocode"]
    assert geocode["ontologyProvenance"] is None
    assert geocode["inputs"] == [
        {"name": "street", "required": True, "constraints": [], "dataType": {"type": "string", "string": {}}},
        {
            "name": "zip",
            "required": False,
            "constraints": [],
            "dataType": {"type": "optionalType", "optionalType": {"wrappedType": {"type": "integer", "integer": {}}}},
        },
    ]
    fields = {"lat": {"type": "float", "float": {}}, "lon": {"type": "float", "float": {}}}
    assert geocode["output"] == {
        "type": "single",
        "single": {"dataType": {"type": "anonymousCustomType", "anonymousCustomType": {"fields": fields}}},
    }
    assert [(i["name"], i["required"]) for i in specs["add"]["inputs"]] == [("x", True), ("y", False)]
    assert specs["count"]["output"]["single"]["dataType"]["type"] == "list"
    when = {i["name"]: i["dataType"]["type"] for i in specs["when"]["inputs"]}
    assert when == {"day": "date", "tags": "set", "extra": "map"}
    assert specs["when"]["output"]["single"]["dataType"]["list"]["elementsType"] == {
        "type": "timestamp",
        "timestamp": {},
    }


def test_undescribable_functions_fail_at_class_definition() -> None:
    with pytest.raises(ConfigError, match=r"Bad.f\(x\): .*has no Foundry data type"):

        class Bad(FunctionModule):
            @function
            async def f(self, x: complex) -> int:
                return 0

    with pytest.raises(ConfigError, match="two functions are named 'g'"):

        class Twice(FunctionModule):
            @function(name="g")
            async def a(self) -> int:
                return 0

            @function(name="g")
            async def b(self) -> int:
                return 0

    with pytest.raises(ConfigError, match="parameter 'x' needs a type annotation"):

        class Untyped(FunctionModule):
            @function
            async def f(self, x) -> int:  # type: ignore[no-untyped-def]
                return 0


class _Posts:
    """Stands in for the runtime client: records what would be posted."""

    def __init__(self) -> None:
        self.results: dict[str, bytes] = {}
        self.stopping = asyncio.Event()

    async def post_result(self, job_id: str, body: bytes | AsyncIterator[bytes]) -> None:
        if isinstance(body, bytes):
            self.results[job_id] = body
        else:
            self.results[job_id] = b"".join([chunk async for chunk in body])


def _env(tmp_path: Path, **extra: str) -> FunctionEnvironment:
    token = tmp_path / "token"
    token.write_text("module-token-1234")
    environ = {
        "RUNTIME_HOST": "runtime.test",
        "RUNTIME_PORT": "8443",
        "GET_JOB_URI": f"https://x{PREFIX}/job",
        "POST_RESULT_URI": f"https://x{PREFIX}/results",
        "POST_SCHEMA_URI": f"https://x{PREFIX}/schemas",
        "RESTART_NOTIFICATION_URI": f"https://x{PREFIX}/restart",
        "MODULE_AUTH_TOKEN": str(token),
        **extra,
    }
    return FunctionEnvironment.load(environ)


async def _run(tmp_path: Path, query_type: str, query: Any, **extra: str) -> bytes:
    posts = _Posts()
    runner = FunctionRunner(Geo(), _env(tmp_path, **extra), posts)  # type: ignore[arg-type]
    job = {"jobId": "j1", "queryType": query_type, "query": query, "authHeader": "Bearer caller-secret-77"}
    await runner.run_job({"type": "computeModuleJobV1", "computeModuleJobV1": job})
    return posts.results["j1"]


@pytest.mark.parametrize(
    ("query_type", "query", "expected"),
    [
        ("geocode", {"street": "abc", "zip": 7}, {"lat": 3.0, "lon": 7.0}),
        ("add", {"x": 2}, 3),
        ("squares", {"n": 4}, None),
    ],
)
async def test_results(tmp_path: Path, query_type: str, query: Any, expected: Any) -> None:
    body = await _run(tmp_path, query_type, query)
    if expected is None:
        assert body == b"0149"  # one JSON value per chunk, no separator
    else:
        assert json.loads(body) == expected


async def test_streaming_async(tmp_path: Path) -> None:
    assert await _run(tmp_path, "count", {"n": 3}) == b'{"i":0}{"i":1}{"i":2}'
    broken = await _run(tmp_path, "count", {"n": 99})
    assert broken.startswith(b'{"i":0}{"i":1}{"i":2}{"exception"') and b"stream broke (after 3 items)" in broken


@pytest.mark.parametrize(
    ("query_type", "query", "key", "message"),
    [
        (
            "nope",
            {},
            "error",
            "Unknown query type 'nope': this module serves add, count, geocode, squares, when, wrong",
        ),
        ("geocode", {"zip": 1}, "error", "query for 'geocode' is invalid: field 'street': Field required"),
        ("add", {"x": "two"}, "error", "query for 'add' is invalid: field 'x': Input should be a valid integer"),
        ("geocode", {"street": "nowhere"}, "exception", "LookupError: no such street"),
        ("wrong", {}, "error", "result of 'wrong' does not match its return type"),
    ],
)
async def test_bad_jobs_fail_with_one_line(tmp_path: Path, query_type: str, query: Any, key: str, message: str) -> None:
    result = json.loads(await _run(tmp_path, query_type, query))
    assert list(result) == [key] and result[key].startswith(message) and "\n" not in result[key]


async def test_result_over_the_limit_fails(tmp_path: Path) -> None:
    result = json.loads(await _run(tmp_path, "geocode", {"street": "abc"}, CONNECTOR_MAX_RESULT_BYTES="5"))
    assert "over the 5-byte limit (CONNECTOR_MAX_RESULT_BYTES)" in result["error"]


def test_environment_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="function mode needs RUNTIME_HOST, RUNTIME_PORT, MODULE_AUTH_TOKEN"):
        FunctionEnvironment.load(
            {
                "GET_JOB_URI": "https://x/job",
                "POST_RESULT_URI": "https://x/r",
                "POST_SCHEMA_URI": "https://x/s",
                "RESTART_NOTIFICATION_URI": "https://x/n",
            }
        )
    with pytest.raises(ConfigError, match="MAX_CONCURRENT_TASKS='many' is not a number"):
        _env(tmp_path, MAX_CONCURRENT_TASKS="many")
    env = _env(tmp_path, MAX_CONCURRENT_TASKS="3")
    assert env.base_url == BASE and env.get_job_path == f"{PREFIX}/job" and env.max_concurrent_tasks == 3


async def test_client_retries_faults_and_rereads_token(tmp_path: Path, mock: aioresponses) -> None:
    import aiohttp

    env = _env(tmp_path)
    seen: list[str] = []

    def record(url: Any, **kwargs: Any) -> CallbackResult:
        seen.append(kwargs["headers"]["Module-Auth-Token"])
        return CallbackResult(status=204)

    mock.post(f"{BASE}{PREFIX}/results/j1", status=503)
    mock.post(f"{BASE}{PREFIX}/results/j1", exception=aiohttp.ClientConnectionError("reset"))
    mock.post(f"{BASE}{PREFIX}/results/j1", status=401)
    mock.post(f"{BASE}{PREFIX}/results/j1", callback=record)
    async with aiohttp.ClientSession() as session:
        client = RuntimeClient(env, session, asyncio.Event())
        env.token_path.write_text("rotated-token-5678")
        await asyncio.wait_for(client.post_result("j1", b"42"), 10)
    assert seen == ["rotated-token-5678"]
