"""Job-token scoping against the fake, through the framework's client and handles and through raw HTTP.

A job token reads its inputs and writes its outputs, nothing else (403 with the SDK's errorName); no token or
an unknown one is a 401; the client re-reads the token file once after a 401, so a rotated token is picked up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors.doubler import Doubled, Number
from framework import FoundryClient, RetryPolicy, StreamInput, StreamOutput, load_environment
from framework._env.environment import Environment, ResourceRef
from framework._errors import FoundryError, NotFoundError, PermissionDeniedError, UnauthorizedError
from framework._handles import Handle
from framework.testing import FakeFoundry, bind_handle

from .stream_support import PREVIEW, DoublerStreams, doubler_streams, end_offsets, hs_path, total

pytestmark = pytest.mark.timeout(30)

NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass
class Scene:
    foundry: FakeFoundry
    s: DoublerStreams
    secret: str  # a stream the job did not declare
    env: Environment
    client: FoundryClient

    def bind(self, handle: Handle, rid: str | None = None) -> Any:
        return bind_handle(handle, self.env, self.client, ref=ResourceRef(rid) if rid else None, connector_name="auth")


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[Scene]:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=1)
        secret = await foundry.create_stream("secret", Number)
        await foundry.publish(s.numbers, [{"x": 1}, {"x": 2}])
        await foundry.publish(secret, [{"x": 42}])
        env = load_environment({**s.job.environ, "CONNECTOR_READ_MODE": "earliest"})
        async with FoundryClient(env, retry=NO_RETRY) as client:
            yield Scene(foundry, s, secret, env, client)


def assert_denied(exc: FoundryError, error_name: str, token: str) -> None:
    assert isinstance(exc, PermissionDeniedError) and exc.status == 403, exc
    assert exc.error_name == error_name and exc.error_code == "PERMISSION_DENIED"
    assert token not in str(exc)


async def test_handles_read_inputs_and_write_outputs(scene: Scene) -> None:
    """The control for the denials below: the same token and client do what the job declared."""
    source = scene.bind(StreamInput[Number]("numbers"))
    await source.open()
    assert sorted(r.x for r in (await source.read_batch()).records) == [1, 2]
    out = scene.bind(StreamOutput[Doubled]("doubled"))
    await out.open()
    try:
        await out.publish(Doubled(twice_x=2))
        await out.flush()
    finally:
        await out.close()
    assert await total(scene.foundry, scene.s.doubled) == 1


async def test_handles_cannot_read_or_write_an_undeclared_stream(scene: Scene) -> None:
    token = scene.s.job.token
    source = scene.bind(StreamInput[Number]("numbers"), scene.secret)
    # Foundry does not reveal streams a token may not see: the lookup is a 404.
    with pytest.raises(NotFoundError) as hidden:
        await source.open()
    assert hidden.value.error_name == "StreamNotFound"
    with pytest.raises(PermissionDeniedError) as denied:
        await source.end_offsets()
    assert_denied(denied.value, "GetEndOffsetsForStreamPermissionDenied", token)
    source.cursor = {"0": 0}  # read anyway, from the start
    with pytest.raises(PermissionDeniedError) as denied:
        await source.read_batch()
    assert_denied(denied.value, "GetRecordsFromStreamPermissionDenied", token)

    out = scene.bind(StreamOutput[Number]("numbers"), scene.secret)
    with pytest.raises(NotFoundError):
        await out.open()
    path = hs_path(scene.secret, "/publishRecords").removeprefix("/api")
    with pytest.raises(PermissionDeniedError) as denied:
        await scene.client.request_json("POST", path, service="stream_proxy", json={"records": [{"x": 7}]})
    assert_denied(denied.value, "PublishRecordsToStreamPermissionDenied", token)
    assert await total(scene.foundry, scene.secret) == 1  # nothing landed


async def test_handles_cannot_write_the_input_stream(scene: Scene) -> None:
    out = scene.bind(StreamOutput[Number]("numbers"))
    await out.open()  # looking it up is a read: allowed on an input
    try:
        await out.publish(Number(x=99))
        with pytest.raises(PermissionDeniedError) as denied:
            await out.flush()
    finally:
        await out.close()
    assert_denied(denied.value, "PublishRecordsToStreamPermissionDenied", scene.s.job.token)
    assert await total(scene.foundry, scene.s.numbers) == 2


async def raw(
    scene: Scene, method: str, path: str, token: str | None, **kwargs: Any
) -> tuple[int, dict[str, Any] | None]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, scene.foundry.url + path, headers=headers, **kwargs) as resp,
    ):
        body = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, body


async def test_raw_http_scoping(scene: Scene) -> None:
    token, s = scene.s.job.token, scene.s
    read = {"partitionId": "0", "startOffset": "0", "limit": "10", **PREVIEW}
    allowed: list[tuple[str, str, dict[str, Any], int]] = [
        ("GET", hs_path(s.numbers, "/getRecords"), {"params": read}, 200),
        ("GET", hs_path(s.doubled, "/getEndOffsets"), {"params": PREVIEW}, 200),  # outputs may be read too
        ("POST", hs_path(s.doubled, "/publishRecords"), {"json": {"records": [{"twice_x": 4}]}}, 204),
        ("POST", hs_path(s.dead, "/publishRecord"), {"json": {"record": {"twice_x": 4}}}, 400),  # schema, not auth
    ]
    for method, path, kwargs, expected in allowed:
        status, body = await raw(scene, method, path, token, **kwargs)
        assert status == expected, (path, body)

    denied: list[tuple[str, str, dict[str, Any], str]] = [
        ("GET", hs_path(scene.secret, "/getRecords"), {"params": read}, "GetRecordsFromStreamPermissionDenied"),
        ("GET", hs_path(scene.secret, "/getEndOffsets"), {"params": PREVIEW}, "GetEndOffsetsForStreamPermissionDenied"),
        (
            "POST",
            hs_path(scene.secret, "/publishRecords"),
            {"json": {"records": [{"x": 1}]}},
            "PublishRecordsToStreamPermissionDenied",
        ),
        (
            "POST",
            hs_path(scene.secret, "/publishRecord"),
            {"json": {"record": {"x": 1}}},
            "PublishRecordToStreamPermissionDenied",
        ),
        (
            "POST",
            hs_path(s.numbers, "/publishRecords"),
            {"json": {"records": [{"x": 1}]}},
            "PublishRecordsToStreamPermissionDenied",
        ),
        (
            "POST",
            hs_path(scene.secret, "/subscribers/spy/readRecords"),
            {"params": PREVIEW, "json": {}},
            "ReadRecordsFromSubscriberPermissionDenied",
        ),
        ("POST", "/_fake/jobs", {"json": {"inputs": {}, "outputs": {}}}, "Default:PermissionDenied"),
    ]
    for method, path, kwargs, error_name in denied:
        status, body = await raw(scene, method, path, token, **kwargs)
        assert status == 403 and body is not None, (path, status, body)
        assert body["errorName"] == error_name and body["errorCode"] == "PERMISSION_DENIED", (path, body)
        assert token not in str(body)

    assert await total(scene.foundry, scene.secret) == 1
    assert await total(scene.foundry, s.numbers) == 2


@pytest.mark.parametrize(
    ("token", "header"),
    [
        (None, None),  # no Authorization header
        ("", "Bearer "),
        ("not-a-job-token", None),
        (None, "Basic dXNlcjpwYXNz"),
    ],
)
async def test_raw_http_unauthenticated(scene: Scene, token: str | None, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    if token:
        headers = {"Authorization": f"Bearer {token}"}
    path = hs_path(scene.s.numbers, "/getEndOffsets")
    async with (
        aiohttp.ClientSession() as session,
        session.get(scene.foundry.url + path, headers=headers, params=PREVIEW) as resp,
    ):
        assert resp.status == 401
        body = await resp.json()
    assert body["errorName"] == "Default:Unauthorized" and body["errorCode"] == "UNAUTHORIZED"


async def test_wrong_token_is_401_after_one_re_read(scene: Scene, tmp_path: Path) -> None:
    scene.env.token_path.write_text("not-a-job-token\n")
    with pytest.raises(UnauthorizedError) as caught:
        await scene.bind(StreamInput[Number]("numbers")).end_offsets()
    assert caught.value.error_name == "Default:Unauthorized"
    assert "not-a-job-token" not in str(caught.value)
    assert scene.client.metrics.token_refreshes == 1  # re-read the file once, then gave up
    assert scene.client.metrics.by_status[401] == 2


async def test_client_picks_up_a_rotated_token_file(scene: Scene) -> None:
    source = scene.bind(StreamInput[Number]("numbers"))
    scene.env.token_path.write_text("expired-token\n")
    with pytest.raises(UnauthorizedError):
        await source.end_offsets()  # the client now holds the bad token

    # Foundry rotates the token: the file gets the new one; the next 401 makes the client read it again.
    scene.env.token_path.write_text(scene.s.job.token + "\n")
    assert await source.end_offsets() == await end_offsets(scene.foundry, scene.s.numbers)
    metrics = scene.client.metrics
    assert metrics.token_refreshes == 2 and metrics.by_status[401] == 3 and metrics.by_status[200] == 1
    assert await source.end_offsets() == {"0": 2}  # and keeps it
    assert metrics.token_refreshes == 2

    # The successful calls were made as the job (provenance attributes them to it).
    batch = await source.read_batch()
    assert [r.x for r in batch.records] == [1, 2]
    reads = [e for e in (await scene.s.job.provenance())["events"] if e["rid"] == scene.s.numbers]
    assert reads and all(e["jobRid"] == scene.s.job.rid for e in reads)


async def test_a_token_of_another_job_with_the_same_scope_is_picked_up_mid_run(scene: Scene) -> None:
    s = scene.s
    other = await scene.foundry.job(
        inputs={"numbers": s.numbers}, outputs={"doubled": s.doubled, "dead_letters": s.dead}
    )
    out = scene.bind(StreamOutput[Doubled]("doubled"))
    scene.env.token_path.write_text("revoked\n")
    with pytest.raises(UnauthorizedError):
        await out.open()
    scene.env.token_path.write_text(other.token + "\n")  # rotated, mid-run
    await out.open()
    try:
        await out.publish(Doubled(twice_x=3))
        await out.flush()
    finally:
        await out.close()
    assert [r["value"]["twice_x"] for r in await scene.foundry.records(s.doubled)] == [3]
    writes = [e for e in (await other.provenance())["events"] if e["rid"] == s.doubled]
    assert [e["recordCount"] for e in writes] == [1]  # attributed to the job whose token wrote it
    assert not [e for e in (await s.job.provenance())["events"] if e["direction"] == "write"]
