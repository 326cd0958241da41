"""`CONNECTOR_LOG_FORMAT=sls` as a real process: every line a valid `service.1` record, no secret in any field.

One run goes through a normal start, an invalid record, publishes refused with 503 and retried, progress lines
and a SIGTERM; another fails on its configuration. Every line either writes is checked against the field rules.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from framework.testing import FakeFoundry

from ..sls_rules import assert_service_1
from .connector_process import ConnectorProcess, start_cli
from .stream_support import NULLABLE_X, doubler_streams, total, wait_until

pytestmark = pytest.mark.timeout(60)


def service_lines(process: ConnectorProcess) -> list[dict[str, Any]]:
    lines = process.output().splitlines()
    assert lines, "the process wrote nothing"
    parsed = []
    for text in lines:
        line = json.loads(text)  # every line, stderr included, is one JSON object
        assert_service_1(line)
        parsed.append(line)
    return parsed


async def test_sls_run_with_invalid_record_and_retried_fault(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        s = await doubler_streams(foundry, partitions=1, numbers_schema=NULLABLE_X)
        await foundry.publish(s.numbers, [{"x": i} for i in range(20)] + [{"x": None}])
        await foundry.faults.add(
            {"status": 503}, method="POST", path=f"*{s.doubled}*/publishRecords", job=s.job.rid, next=3
        )
        environ = {
            **s.job.environ,
            "CONNECTOR_LOG_FORMAT": "sls",
            "CONNECTOR_PROGRESS_INTERVAL_S": "0.2",
            "CONNECTOR_RETRY_INITIAL_BACKOFF_S": "0.01",
        }
        process = await start_cli(tmp_path, "sls", "run", "tests.e2e.sls_connector:LoudDoubler", environ=environ)
        try:

            async def done() -> bool:
                outputs = await total(foundry, s.doubled) >= 20 and await total(foundry, s.dead) >= 1
                return outputs and '"message":"progress"' in process.output()

            await wait_until(done, "20 outputs, 1 dead letter and a progress line", timeout_s=30)
        finally:
            assert await process.stop() == 0, process.output()
        assert [rule["fired"] for rule in await foundry.faults.list()] == [3]

    text = process.output()
    for secret in (s.job.token, "url-pass-9c1e", "query-key-77b0"):
        assert secret not in text
    lines = service_lines(process)
    by_message = {line["message"]: line for line in lines}
    outage = "Foundry unavailable: retrying until it answers"  # three failures in a row of one request
    assert {"source configured", "invalid record", outage, "progress", "stopped"} <= set(by_message)

    retry = by_message[outage]
    assert retry["level"] == "WARN" and retry["params"]["status"] == 503
    invalid = by_message["invalid record"]
    assert invalid["level"] == "ERROR"
    assert invalid["params"]["source"] == "numbers" and invalid["params"]["offset"] == 20
    assert "error" in invalid["unsafeParams"] and "error" not in invalid["params"]
    configured = by_message["source configured"]
    assert configured["unsafeParams"]["url"].startswith("https://ingest:[REDACTED]@source.example.test/")
    assert configured["tags"] == {"connector": "loud-doubler"}
    assert all(line["tags"] == {"connector": "loud-doubler"} for line in lines)


async def test_sls_configuration_error_is_one_line(tmp_path: Path) -> None:
    alias_map = tmp_path / "aliases.json"
    alias_map.write_text("{}")
    environ = {
        "RESOURCE_ALIAS_MAP": str(alias_map),
        "FOUNDRY_URL": "http://user:url-pass-3f2a@127.0.0.1:9",
        "CONNECTOR_LOG_FORMAT": "sls",
    }
    process = await start_cli(tmp_path, "bad", "run", "connectors.doubler:Doubler", environ=environ)
    assert await asyncio.wait_for(process.process.wait(), 30) == 2
    (line,) = service_lines(process)
    assert line["level"] == "ERROR" and line["message"] == "configuration error"
    assert "BUILD2_TOKEN" in line["unsafeParams"]["error"]
    assert "stacktrace" not in line and "url-pass-3f2a" not in process.output()
