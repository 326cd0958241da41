"""The fake's CLI as a user runs it: serve a stack, then look inside with resources, jobs, publish, records..."""

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

STACK = """
streams:
  numbers: {model: connectors.doubler:Number, partitions: 2}
  doubled: {model: connectors.doubler:Doubled}
datasets:
  archive: {}
media_sets:
  media: {}
jobs:
  doubler:
    inputs: {numbers: numbers}
    outputs: {doubled: doubled}
"""


async def cli(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fake_stream_proxy", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_serve_a_stack_then_inspect_it(tmp_path: Path) -> None:
    (tmp_path / "stack.yaml").write_text(STACK)
    state = tmp_path / "state"
    serve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fake_stream_proxy", "serve", "--port", "0", "--https-port", "0",
        "--state-dir", str(state), "--stack", str(tmp_path / "stack.yaml"), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert serve.stdout is not None
        lines = [(await asyncio.wait_for(serve.stdout.readline(), 20)).decode() for _ in range(4)]
        match = re.search(r"http://127\.0\.0\.1:\d+", lines[0])
        assert match, lines
        assert lines[3].startswith("job doubler: env file ")
        conn = ("--url", match.group(0), "--state-dir", str(state))

        code, out, _ = await cli("resources", *conn)
        assert code == 0 and out.splitlines()[0].split() == ["TYPE", "NAME", "RID", "CREATEDTIME"]
        assert {line.split()[1] for line in out.splitlines()[1:]} == {"numbers", "doubled", "archive", "media"}
        code, out, _ = await cli("jobs", *conn, "--json")
        (job,) = json.loads(out)["data"]
        assert set(job["inputs"]) == {"numbers"} and set(job["outputs"]) == {"doubled"} and "token" not in out

        records = b"".join(json.dumps({"x": i}).encode() + b"\n" for i in range(25))
        code, out, _ = await cli("publish", "numbers", "-", *conn, stdin=records)
        assert (code, out.strip()) == (0, "published 25 records to numbers")
        code, out, _ = await cli("records", "numbers", *conn, "--json", "--tail", "100")
        got = [json.loads(line) for line in out.splitlines()]
        assert code == 0 and sorted(r["value"]["x"] for r in got) == list(range(25))
        code, out, _ = await cli("records", "numbers", *conn, "--partition", "0", "--from-offset", "0")
        assert code == 0 and all(line.startswith("0:") for line in out.splitlines())

        code, out, _ = await cli("resources", *conn, "--type", "media_set", "--json")
        media_rid = json.loads(out)["data"][0]["rid"]
        token = (state / "admin-token").read_text().strip()
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
            for path, body in (("a.txt", b"one"), ("b.txt", b"two!"), ("a.txt", b"three")):
                url = f"{match.group(0)}/api/v2/mediasets/{media_rid}/items"
                params = {"preview": "true", "mediaItemPath": path}
                async with session.post(url, params=params, data=body) as resp:
                    assert resp.status == 200, await resp.text()
        code, out, _ = await cli("media", "media", *conn, "--json")
        items = {i["path"]: i["sizeBytes"] for i in json.loads(out)["data"]}
        assert code == 0 and items == {"a.txt": 5, "b.txt": 4}  # the last upload to a path wins

        code, _, err = await cli("records", "nonesuch", *conn)
        assert code == 2 and err.strip() == (
            "fake-stream-proxy records: no stream named 'nonesuch': see `fake-stream-proxy resources`"
        )
        code, _, err = await cli("publish", "numbers", str(tmp_path / "missing.jsonl"), *conn)
        assert code == 2 and "cannot read" in err and len(err.strip().splitlines()) == 1
        code, _, err = await cli("resources", "--url", "http://127.0.0.1:9", "--admin-token", "x")
        assert code == 2 and "is it running?" in err and len(err.strip().splitlines()) == 1
    finally:
        serve.send_signal(signal.SIGTERM)
        await asyncio.wait_for(serve.wait(), 15)
