"""Stack files: declare streams, datasets, media sets, jobs and runtimes once; the fake creates what is missing."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from fake_stream_proxy import FakeServer
from fake_stream_proxy.stack import StackError

DOUBLER_STACK = Path(__file__).resolve().parents[2] / "connectors" / "doubler" / "stack.yaml"
STACK = """
streams:
  numbers: {model: connectors.doubler:Number, partitions: 3}
  doubled: {model: connectors.doubler:Doubled}
  dead_letters: {model: framework:DeadLetter}
datasets:
  archive: {}
media_sets:
  media: {transactional: true}
jobs:
  doubler:
    connector: connectors.doubler:Doubler
    inputs: {numbers: numbers}
    outputs: {doubled: doubled, dead_letters: dead_letters}
foundry:
  compute_modules:
    runtimes: [{runtime_id: geo, module_auth_token: geo-token-123}]
    deployed_apps: [{deployed_app_rid: ri.foundry.main.deployed-app.geo, runtime_id: geo}]
"""


async def _resources(fake: FakeServer) -> list[dict[str, str]]:
    headers = {"Authorization": f"Bearer {fake.admin_token}"}
    async with aiohttp.ClientSession() as session, session.get(f"{fake.url}/_fake/resources", headers=headers) as r:
        assert r.status == 200
        body = await r.json()
    return sorted(body["data"], key=lambda x: x["name"])


async def test_stack_creates_everything_once_and_writes_job_files(tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text(STACK)
    state = tmp_path / "state"
    async with FakeServer(state, stack=stack) as fake:
        first = await _resources(fake)
        folder = fake.job_folders["doubler"]
        token = (folder / "token").read_text()
        env = dict(line.split("=", 1) for line in (folder / "env").read_text().splitlines())
    assert [(r["type"], r["name"]) for r in first] == [
        ("dataset", "archive"), ("stream", "dead_letters"), ("stream", "doubled"), ("media_set", "media"),
        ("stream", "numbers"),
    ]  # fmt: skip
    assert token and not token.endswith("\n") and oct((folder / "token").stat().st_mode & 0o777) == "0o600"
    assert env["BUILD2_TOKEN"] == str(folder / "token") and env["CONNECTOR_SPEC"] == "connectors.doubler:Doubler"
    aliases = json.loads(Path(env["RESOURCE_ALIAS_MAP"]).read_text())  # noqa: ASYNC240
    assert set(aliases) == {"numbers", "doubled", "dead_letters"}
    assert aliases["numbers"]["rid"] == next(r["rid"] for r in first if r["name"] == "numbers")

    # Palantir's own pipeline helpers read the files as they are.
    from compute_modules.auth.pipeline import retrieve_pipeline_token
    from compute_modules.resources.pipeline_resources import get_pipeline_resources

    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k in ("BUILD2_TOKEN", "RESOURCE_ALIAS_MAP")})
    try:
        assert retrieve_pipeline_token() == token
        assert get_pipeline_resources()["numbers"].rid == aliases["numbers"]["rid"]
    finally:
        os.environ.clear()
        os.environ.update(saved)

    # A restart on the same state: nothing new, the same rids and the same job token.
    async with FakeServer(state, stack=stack) as fake:
        assert await _resources(fake) == first
        assert (fake.job_folders["doubler"] / "token").read_text() == token
        headers = {"Module-Auth-Token": "geo-token-123"}
        url = f"{fake.url}/_emulate/foundry/compute-modules/runtimes/geo"
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
            assert r.status == 200 and (await r.json())["runtime"]["runtime_id"] == "geo"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("streams:\n  a: {partitions: 1, colour: red}\n", "stack.yaml: streams.a.colour: unknown key"),
        ("topics: {}\n", "stack.yaml: topics: unknown key"),
        ("streams:\n  a: {model: no_such_module:Model}\n", "streams.a.model: cannot import 'no_such_module'"),
        ("streams:\n  a: {model: connectors.doubler:Nope}\n", "streams.a.model: 'connectors.doubler' has no 'Nope'"),
        (
            "streams: {a: {}, b: {}}\njobs:\n  j:\n    inputs: {x: a}\n    outputs:\n      y: b\n      y: a\n",
            "line 7: 'y' is declared twice",
        ),
        (
            "streams: {a: {}}\njobs:\n  j: {inputs: {x: a}, outputs: {x: a}}\n",
            "alias 'x' is both an input and an output",
        ),
        ("streams: {a: {}}\njobs:\n  j: {inputs: {x: a}, outputs: {y: a}}\n", "'a' is also an input of the job"),
        ("streams: {a: {}}\njobs:\n  j: {inputs: {x: nope}}\n", "no stream, dataset or media set is named 'nope'"),
        ("foundry: {schedules: {}}\n", "foundry.schedules: unknown section"),
        ("streams: [\n", "not valid YAML"),
    ],
)
async def test_bad_stack_files_fail_with_one_line_and_create_nothing(tmp_path: Path, text: str, message: str) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text("streams:\n  first: {}\n" + text if text.startswith(("jobs", "foundry")) else text)
    with pytest.raises(StackError) as raised:
        async with FakeServer(tmp_path / "state", stack=stack):
            pass
    assert message in str(raised.value) and "\n" not in str(raised.value)
    async with FakeServer(tmp_path / "state") as fake:
        assert await _resources(fake) == []


async def test_cli_reports_a_bad_stack_in_one_line_exit_2(tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text("streams:\n  a: {partitions: 0}\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fake_stream_proxy", "serve", "--port", "0", "--https-port", "0",
        "--state-dir", str(tmp_path / "state"), "--stack", str(stack),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2 and out == b""
    (line,) = err.decode().strip().splitlines()
    assert line.startswith("fake-stream-proxy: --stack ") and "streams.a.partitions" in line


async def test_the_doubler_stack_file_the_readme_uses_applies(tmp_path: Path) -> None:
    async with FakeServer(tmp_path / "state", stack=DOUBLER_STACK) as fake:
        assert {r["name"] for r in await _resources(fake)} == {"numbers", "doubled", "dead_letters"}
        env = (fake.job_folders["doubler"] / "env").read_text()
    assert "CONNECTOR_SPEC=connectors.doubler:Doubler\n" in env and f"FOUNDRY_URL={fake.url}\n" in env
