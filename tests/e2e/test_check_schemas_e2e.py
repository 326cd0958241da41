"""`connector check` compares every resource's schema with its model: one line per mismatched field, a summary."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from connectors.doubler import Doubled, Number
from connectors.stream_archiver import Event
from framework import DeadLetter
from framework.testing import FakeFoundry

from .connector_process import ConnectorProcess, start_cli

pytestmark = pytest.mark.timeout(60)
SPEC = "connectors.doubler:Doubler"


async def _check(tmp_path: Path, name: str, environ: dict[str, str], spec: str = SPEC) -> tuple[int, ConnectorProcess]:
    process = await start_cli(tmp_path, name, "check", spec, environ=environ)
    return await asyncio.wait_for(process.process.wait(), 30), process


def _errors(process: ConnectorProcess) -> list[dict[str, Any]]:
    return [e for e in process.events() if e.get("level") == "error"]


async def _doubler_job(
    foundry: FakeFoundry, *, numbers: Any = Number, doubled: Any = Doubled, dead: Any = DeadLetter
) -> dict[str, str]:
    rids = {}
    for alias, shape in (("numbers", numbers), ("doubled", doubled), ("dead_letters", dead)):
        if shape is None or isinstance(shape, dict):
            rids[alias] = await foundry.create_stream(alias, schema=shape)
        else:
            rids[alias] = await foundry.create_stream(alias, shape)
    job = await foundry.job(
        inputs={"numbers": rids["numbers"]}, outputs={"doubled": rids["doubled"], "dead_letters": rids["dead_letters"]}
    )
    return {**job.environ, "NUMBERS_RID": rids["numbers"]}


async def test_matching_schemas_pass_with_a_summary(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        environ = await _doubler_job(foundry)
        await foundry.publish(environ["NUMBERS_RID"], [{"x": 1}, {"x": 2}])
        code, process = await _check(tmp_path, "good", environ)
    assert code == 0, process.output()
    assert process.events()[-1]["event"] == "check passed: 3 resources"
    assert not _errors(process)


async def test_an_output_stream_that_rejects_every_record_fails_naming_the_field(tmp_path: Path) -> None:
    rejects = {"fields": [{"name": "twice_x", "schema": {"nullable": False, "dataType": {"type": "string"}}}]}
    async with FakeFoundry(tmp_path) as foundry:
        environ = await _doubler_job(foundry, doubled=rejects, dead=Number)
        code, process = await _check(tmp_path, "bad", environ)
    assert code == 1, process.output()
    lines = {(e.get("alias"), e.get("error")) for e in _errors(process)}
    assert ("doubled", "field 'twice_x': the model writes long, the stream's field is string") in lines
    assert ("dead_letters", "field 'source': the model writes it, the stream has no such field") in lines
    assert ("dead_letters", "field 'x': the stream requires it, the model does not write it") in lines
    assert process.events()[-1]["event"] == "check failed: 2 of 3"
    assert "Traceback" not in process.output()


async def test_records_an_input_holds_must_parse(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        environ = await _doubler_job(foundry, numbers=None)  # no schema: any JSON object is accepted
        await foundry.publish(environ["NUMBERS_RID"], [{"x": 1}, {"x": "many"}, {"y": 3}])
        code, process = await _check(tmp_path, "input", environ)
    assert code == 1, process.output()
    errors = [e["error"] for e in _errors(process) if e.get("alias") == "numbers"]
    assert len(errors) == 2 and all(e.startswith("field 'x': record at partition 0 offset ") for e in errors)
    assert process.events()[-1]["event"] == "check failed: 1 of 3"


async def test_a_dataset_output_without_a_schema_yet_passes(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        events = await foundry.create_stream("events", Event)
        archive = await foundry.create_dataset("archive")
        job = await foundry.job(inputs={"events": events}, outputs={"archive": archive})
        code, process = await _check(tmp_path, "dataset", job.environ, "connectors.stream_archiver:StreamArchiver")
    assert code == 0, process.output()
    assert process.events()[-1]["event"] == "check passed: 2 resources"


async def test_an_unreachable_foundry_is_one_line(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        environ = await _doubler_job(foundry)
    environ = {**environ, "FOUNDRY_URL": "http://127.0.0.1:9", "CONNECTOR_RETRY_INITIAL_BACKOFF_S": "0"}
    code, process = await _check(tmp_path, "down", environ)
    assert code == 1, process.output()
    assert len(_errors(process)) == 1 and "cannot reach Foundry" in _errors(process)[0]["error"]
    assert "Traceback" not in process.output()
    json.dumps(process.events())  # every line is a JSON event
