"""`fake-stream-proxy serve` as a real process: ready line, admin token, and durability across SIGKILL."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

pytestmark = pytest.mark.timeout(60)


async def _serve(state: Path, *extra: str) -> tuple[asyncio.subprocess.Process, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fake_stream_proxy",
        "serve",
        "--port",
        "0",
        "--https-port",
        "0",
        "--state-dir",
        str(state),
        *extra,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    first = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
    second = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
    url = re.search(r"http://127\.0\.0\.1:(\d+)", first)
    token = re.search(r"admin token: (\S+)", second)
    assert url and int(url.group(1)) > 0, first
    assert token, second
    return process, url.group(0), token.group(1)


async def test_serve_prints_url_and_token_and_survives_sigkill(tmp_path: Path) -> None:
    state = tmp_path / "state"
    process, url, token = await _serve(state)
    assert (state / "admin-token").read_text().strip() == token
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(f"{url}/_fake/resources", json={"type": "stream", "name": "s"}) as resp:
            rid = (await resp.json())["rid"]
        path = f"/api/v2/highScale/streams/datasets/{rid}/streams/master"
        async with session.post(f"{url}{path}/publishRecords", json={"records": [{"n": i} for i in range(50)]}) as resp:
            assert resp.status == 204
        process.send_signal(signal.SIGKILL)  # no clean shutdown: what was acknowledged must be on disk
        await asyncio.wait_for(process.wait(), 10)

        process, url, again = await _serve(state)
        try:
            assert again == token, "a restarted fake keeps its admin token"
            params = {"partitionId": "0", "startOffset": "0", "limit": "100", "preview": "true"}
            async with session.get(f"{url}{path}/getRecords", params=params) as resp:
                records = await resp.json()
            assert [r["value"]["n"] for r in records] == list(range(50))
            async with session.get(f"{url}/_fake/health") as resp:
                assert resp.status == 200
        finally:
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 15) == 0


async def test_explicit_admin_token_and_busy_port(tmp_path: Path) -> None:
    process, url, token = await _serve(tmp_path / "a", "--admin-token", "my-admin-token")
    try:
        assert token == "my-admin-token"
        port = url.rsplit(":", 1)[1]
        busy = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "fake_stream_proxy",
            "serve",
            "--port",
            port,
            "--state-dir",
            str(tmp_path / "b"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(busy.communicate(), 20)
        assert busy.returncode == 2
        assert len(err.decode().strip().splitlines()) == 1 and f"127.0.0.1:{port}" in err.decode(), err
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 15)


async def test_sls_log_format_for_the_fake(tmp_path: Path) -> None:
    from ..sls_rules import assert_service_1

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fake_stream_proxy", "serve", "--port", "0", "--https-port", "0",
        "--state-dir", str(tmp_path / "s"), "--log-format", "sls",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    printed = [(await asyncio.wait_for(process.stdout.readline(), 20)).decode() for _ in range(4)]
    process.send_signal(signal.SIGTERM)
    rest, err = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0 and err == b""
    assert printed[0].startswith("fake-stream-proxy listening on http://127.0.0.1:")
    lines = [json.loads(line) for line in [printed[3], *rest.decode().splitlines()]]
    for line in lines:
        assert_service_1(line)
    assert [line["message"] for line in lines] == ["fake serving", "fake stopped"]
    assert lines[0]["origin"] == "fake_stream_proxy" and lines[0]["unsafeParams"]["url"].startswith("http://")
    token = printed[1].split()[2]
    assert all(token not in json.dumps(line) for line in lines)
