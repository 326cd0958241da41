"""Bad input of every kind against the real `connector` process: exit code, ONE clear line, nothing lost.

Three families: bad code or command line (no server needed), bad records (the fake, dead letters), and a bad
server (the fake misbehaving through its fault kit). Bad environments are `test_bad_env_e2e.py`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from framework.testing import FakeFoundry

from .connector_process import ROOT, start_cli
from .stream_support import doubler_streams, total, wait_until

pytestmark = pytest.mark.timeout(120)

TOKEN = "job-token-5d2e8b"
ALIASES = {
    alias: {"rid": f"ri.foundry.main.dataset.{alias}", "branch": "master"}
    for alias in ("numbers", "doubled", "dead_letters", "media", "media_metadata")
}
MY_CONNECTOR = """
from framework import Connector, StreamInput, StreamOutput
from connectors.doubler import Number, Doubled

class MyConnector(Connector):
    numbers = StreamInput[Number]("numbers")
    doubled = StreamOutput[Doubled]("doubled")

    async def transform(self, record: Number) -> Doubled:
        return Doubled(twice_x=record.x)
"""


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    code: int
    expect: tuple[str, ...]  # what the one error line must say ("{dir}" is the case's folder)
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    in_folder: bool = False  # run from the case's folder (a user's project), not the repository
    script: bool = False  # the `connector` console script (as a user runs it), not `python -m framework.cli`


CODE_CASES = [
    Case(
        "syntax-error",
        ("run", "broken_mod:Thing"),
        2,
        ("syntax error", "{dir}/broken_mod.py:3"),
        files={"broken_mod.py": "import os\n\ndef oops(:\n"},
        in_folder=True,
    ),
    Case(
        "import-time-error",
        ("run", "raising_mod:Thing"),
        2,
        ("importing raising_mod failed", "raising_mod.py:1", "ZeroDivisionError"),
        files={"raising_mod.py": "x = 1 / 0\n"},
        in_folder=True,
    ),
    Case("missing-class", ("run", "connectors.doubler:Nope"), 2, ("no class 'Nope'", "Doubler")),
    Case(
        "media-ingest-spool-missing",
        ("run", "connectors.media_ingest:MediaIngest"),
        2,
        ("MEDIA_INGEST_SPOOL_DIR", "{dir}/no-spool", "not an existing directory"),
        env={"MEDIA_INGEST_SPOOL_DIR": "{dir}/no-spool"},
    ),
    Case("check-unreachable", ("check", "connectors.doubler:Doubler"), 1, ("cannot reach Foundry", "127.0.0.1:9")),
    # The user's own package, found from the project folder (the current directory is on sys.path): it gets
    # past importing and fails only on the unreachable Foundry.
    Case(
        "own-package-from-cwd",
        ("check", "mypkg:MyConnector"),
        1,
        ("cannot reach Foundry",),
        files={"mypkg/__init__.py": MY_CONNECTOR},
        in_folder=True,
        script=True,  # `python -m` would put the folder on sys.path itself; the script does not
    ),
]


@dataclass
class Result:
    code: int
    output: str
    folder: Path


def environ_for(folder: Path, extra: dict[str, str]) -> dict[str, str]:
    (folder / "token").write_text(TOKEN + "\n")
    (folder / "aliases.json").write_text(json.dumps(ALIASES))
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    return {
        **keep,
        "PYTHONPATH": str(ROOT),
        "BUILD2_TOKEN": str(folder / "token"),
        "RESOURCE_ALIAS_MAP": str(folder / "aliases.json"),
        "FOUNDRY_URL": "http://127.0.0.1:9",
        "CONNECTOR_LOG_FORMAT": "json",
        "CONNECTOR_RETRY_INITIAL_BACKOFF_S": "0.01",
        **{k: v.replace("{dir}", str(folder)) for k, v in extra.items()},
    }


def prepare(case: Case, folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True)
    for name, content in case.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content)
    return environ_for(folder, case.env)


async def run_case(case: Case, folder: Path, environ: dict[str, str]) -> Result:
    command = (
        [str(Path(sys.executable).parent / "connector")] if case.script else [sys.executable, "-m", "framework.cli"]
    )
    process = await asyncio.create_subprocess_exec(
        *command,
        *case.args,
        env=environ,
        cwd=folder if case.in_folder else ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(errors="replace"), folder)


@pytest.fixture(scope="module")
def code_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    root = tmp_path_factory.mktemp("matrix")

    async def run_all() -> list[Result]:
        prepared = [(case, prepare(case, root / case.id)) for case in CODE_CASES]
        return await asyncio.gather(*(run_case(case, root / case.id, env) for case, env in prepared))

    return {case.id: result for case, result in zip(CODE_CASES, asyncio.run(run_all()), strict=True)}


def error_lines(output: str) -> list[dict[str, object]]:
    events = [json.loads(line) for line in output.splitlines() if line.strip()]
    return [e for e in events if e.get("level") in ("error", "critical")]


@pytest.mark.parametrize("case", CODE_CASES, ids=[c.id for c in CODE_CASES])
def test_bad_code_or_command_gives_one_line_and_its_exit_code(case: Case, code_results: dict[str, Result]) -> None:
    result = code_results[case.id]
    assert result.code == case.code, result.output
    assert "Traceback" not in result.output, result.output
    (line,) = error_lines(result.output)  # every output line is JSON: no stray traceback either
    text = json.dumps(line)
    for expected in case.expect:
        assert expected.replace("{dir}", str(result.folder)) in text, text
    assert TOKEN not in result.output


# Bad records and a bad server: the doubler as a process against the in-process fake.

FAST = {
    "CONNECTOR_RETRY_INITIAL_BACKOFF_S": "0.01",
    "CONNECTOR_RETRY_MAX_BACKOFF_S": "0.05",
    "CONNECTOR_OUTAGE_REPORT_S": "0.5",
}


async def test_a_fatal_401_is_one_line_and_exit_1_without_unretrieved_futures(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=3)
        await foundry.publish(s.numbers, [{"x": i} for i in range(3000)])
        await foundry.faults.add({"expireToken": True}, path="*/publishRecords", job=s.job.rid)
        process = await start_cli(tmp_path, "401", "run", "connectors.doubler:Doubler", environ={**s.job.environ})
        code = await asyncio.wait_for(process.process.wait(), 60)
        out = process.output()
        assert code == 1, out
        assert "Future exception was never retrieved" not in out and "Traceback" not in out, out[:3000]
        (line,) = error_lines(out)
        assert line["event"] == "Foundry error" and line["status"] == 401, line
        assert s.job.token not in out
        assert await total(foundry, s.doubled) == 0 and sum((await foundry.end_offsets(s.numbers)).values()) == 3000


async def test_a_second_sigterm_stops_at_once_with_exit_143_and_one_line(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=1)
        await foundry.publish(s.numbers, [{"x": i} for i in range(100)])
        await foundry.faults.add({"status": 503}, path="*/publishRecords", job=s.job.rid)  # publishing hangs
        environ = {**s.job.environ, **FAST, "CONNECTOR_SHUTDOWN_TIMEOUT_S": "60"}
        process = await start_cli(tmp_path, "twice", "run", "connectors.doubler:Doubler", environ=environ)

        async def outage() -> bool:
            return "Foundry unavailable" in process.output()

        await wait_until(outage, "the outage line", timeout_s=30)
        process.process.send_signal(signal.SIGTERM)
        await wait_until(_async(lambda: '"stopping"' in process.output()), "the stopping line", timeout_s=10)
        code = await process.stop(signal.SIGTERM, timeout_s=10)  # well before the 60 s shutdown timeout
        out = process.output()
        assert code == 143, out
        (line,) = error_lines(out)
        assert str(line["event"]).startswith("second signal") and line["exit_code"] == 143, line
        assert "Traceback" not in out and "Future exception" not in out, out[-3000:]
        assert await foundry.read_position(s.numbers, "Doubler-numbers-" + _digest(s.numbers)) in ({}, {"0": 0})


async def test_bad_records_and_garbage_answers_lose_nothing_and_exit_0(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        schema = {"fields": [{"name": "x", "schema": {"nullable": True, "dataType": {"type": "long"}}}]}
        s = await doubler_streams(foundry, partitions=2, numbers_schema=schema)
        good = [{"x": i} for i in range(500)]
        await foundry.publish(s.numbers, [*good[:250], {"x": None}, *good[250:]])
        for garbage, path in (("not-json", "*/readRecords"), ("truncated", "*/commitOffsets")):
            await foundry.faults.add({"garbage": garbage}, path=path, job=s.job.rid, next=3)
        await foundry.faults.add({"status": 503}, path="*/publishRecords", job=s.job.rid, rate=0.2, seed=3)
        environ = {**s.job.environ, **FAST}
        process = await start_cli(tmp_path, "records", "run", "connectors.doubler:Doubler", environ=environ)
        try:
            await wait_until(_async_total(foundry, s.dead, 1), "the dead letter", timeout_s=30)
            await wait_until(_async_distinct(foundry, s.doubled, 500), "every record doubled", timeout_s=30)
        finally:
            code = await process.stop()
        out = process.output()
        assert code == 0, out[-3000:]
        assert "Traceback" not in out
        (letter,) = await foundry.records(s.dead)
        assert json.loads(letter["value"]["raw"]) == {"x": None}
        assert {r["value"]["twice_x"] for r in await foundry.records(s.doubled)} == {2 * i for i in range(500)}
        invalid = [e for e in error_lines(out) if e["event"] == "invalid record"]
        assert len(invalid) == 1 and len(error_lines(out)) == 1, error_lines(out)


def _digest(rid: str) -> str:
    return hashlib.sha256(f"{rid}:master".encode()).hexdigest()[:12]


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()

    return run


def _async_total(foundry: FakeFoundry, rid: str, count: int) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return await total(foundry, rid) >= count

    return run


def _async_distinct(foundry: FakeFoundry, rid: str, count: int) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return len({r["value"]["twice_x"] for r in await foundry.records(rid)}) >= count

    return run
