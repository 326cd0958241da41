"""`connector dev`: from a class to a running local job in one command, for this repo's and a user's own code."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]

OWN_CONNECTOR = """
from pydantic import BaseModel

from framework import Connector, StreamInput, StreamOutput


class Reading(BaseModel):
    celsius: float


class Fahrenheit(BaseModel):
    fahrenheit: float


class ToFahrenheit(Connector):
    readings = StreamInput[Reading]("readings")
    converted = StreamOutput[Fahrenheit]("converted")

    async def transform(self, record: Reading) -> Fahrenheit:
        return Fahrenheit(fahrenheit=record.celsius * 9 / 5 + 32)
"""


async def dev(cwd: Path, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECTOR_", "BUILD2", "RESOURCE_ALIAS"))}
    env["PYTHONPATH"] = str(ROOT)  # this repo's `connectors` package; a user's own package comes from `cwd`
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framework.cli", "dev", *args, "--exit-when-idle", cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_dev_runs_the_doubler_and_reuses_its_job(tmp_path: Path) -> None:
    numbers = tmp_path / "numbers.jsonl"
    numbers.write_text("".join(json.dumps({"x": i}) + "\n" for i in range(1, 26)))
    code, out = await dev(tmp_path, "connectors.doubler:Doubler", "--publish", str(numbers))
    assert code == 0, out
    assert "numbers input: 25 records" in out and "doubled output: 25 records" in out  # plain progress lines
    assert 'doubled: 25 records; latest: {"twice_x": 42}' in out
    # Again on the same state: the same job, so its subscriber resumes where it stopped (no re-processing).
    code, out = await dev(tmp_path, "connectors.doubler:Doubler", "--publish", str(numbers))
    assert code == 0 and "doubled: 50 records" in out, out
    token = (tmp_path / ".connector-dev" / "job-1" / "token").read_text()
    assert token and not token.endswith("\n") and token not in out


async def test_dev_runs_a_connector_from_the_users_own_project(tmp_path: Path) -> None:
    (tmp_path / "weather").mkdir()
    (tmp_path / "weather" / "__init__.py").write_text("")
    (tmp_path / "weather" / "convert.py").write_text(OWN_CONNECTOR)
    (tmp_path / "readings.jsonl").write_text('{"celsius": 100}\n{"celsius": 0}\n')
    code, out = await dev(tmp_path, "weather.convert:ToFahrenheit", "--publish", "readings.jsonl")
    assert code == 0, out
    assert 'converted: 2 records; latest: {"fahrenheit": 212.0}, {"fahrenheit": 32.0}' in out


async def test_dev_bad_input_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"x": 1}\nnot json\n')
    code, out = await dev(tmp_path, "connectors.doubler:Doubler", "--publish", "bad.jsonl")
    assert (code, out.strip()) == (2, "connector dev: --publish bad.jsonl:2: not a JSON record")
    code, out = await dev(tmp_path, "connectors.doubler:Nope")
    assert code == 2 and len(out.strip().splitlines()) == 1 and "Nope" in out


async def test_dev_reload_restarts_the_connector_when_its_source_changes(tmp_path: Path) -> None:
    (tmp_path / "weather").mkdir()
    (tmp_path / "weather" / "__init__.py").write_text("")
    source = tmp_path / "weather" / "convert.py"
    source.write_text(OWN_CONNECTOR)
    (tmp_path / "readings.jsonl").write_text('{"celsius": 100}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECTOR_", "BUILD2", "RESOURCE_ALIAS"))}
    env["PYTHONPATH"] = str(ROOT)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framework.cli", "dev", "weather.convert:ToFahrenheit", "--publish", "readings.jsonl",
        "--reload", cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    seen: list[str] = []

    async def until(text: str) -> None:
        assert process.stdout is not None
        while not any(text in line for line in seen):
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, "".join(seen)
            seen.append(line.decode())

    try:
        await until("converted output: 1 records")
        source.write_text(OWN_CONNECTOR.replace("* 9 / 5 + 32", "* 9 / 5 + 32.5"))
        await until("restarted 1x on source changes")
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, "".join(seen) + rest.decode()
    assert "converted: 1 records" in rest.decode()
