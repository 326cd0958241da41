"""`CONNECTOR_HTTP_PORT`: /live, /ready and Prometheus /metrics from a running `connector run` process."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest

from connectors.doubler import Doubler
from framework import FoundryClient, load_environment
from framework._driver import Driver
from framework._health import HealthServer
from framework.testing import FakeFoundry

from .connector_process import start_connector
from .stream_support import doubler_streams, wait_until

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample(text: str, name: str) -> float:
    """The value of the metric line starting with `name` (labels included)."""
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.rsplit(" ", 1)[1])


async def test_health_and_metrics_are_served_while_the_connector_runs(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with FakeFoundry(tmp_path) as foundry, aiohttp.ClientSession() as http:
        s = await doubler_streams(foundry, partitions=2)
        await foundry.publish(s.numbers, [{"x": i} for i in range(300)])
        environ = {**s.job.environ, "CONNECTOR_HTTP_PORT": str(port)}
        process = await start_connector(tmp_path, "health", "connectors.doubler:Doubler", environ)
        try:

            async def status(path: str) -> int:
                try:
                    async with http.get(base + path) as resp:
                        return resp.status
                except aiohttp.ClientConnectionError:
                    return 0

            async def ready() -> bool:
                return await status("/ready") == 200

            await wait_until(ready, "/ready to answer 200", timeout_s=30)
            assert await status("/live") == 200
            await foundry.wait_for_records(s.doubled, 300)

            async def counted() -> bool:
                async with http.get(base + "/metrics") as resp:
                    text = await resp.text()
                return 'connector_records_out_total{alias="doubled"} 300.0' in text

            await wait_until(counted, "300 records out in /metrics", timeout_s=20)
            async with http.get(base + "/metrics") as resp:
                assert resp.status == 200 and resp.content_type == "text/plain"
                text = await resp.text()
        finally:
            code = await process.stop()
        assert code == 0, process.output()

    assert sample(text, 'connector_records_in_total{alias="numbers"}') == 300
    assert sample(text, 'connector_records_invalid_total{alias="numbers"}') == 0
    assert sample(text, "connector_foundry_unavailable") == 0
    assert sample(text, "connector_ready") == 1
    assert sample(text, "connector_foundry_requests_total") > 0
    for name in ("connector_foundry_retries_total", "connector_commit_age_seconds", "connector_stream_resets_total"):
        assert name in text
    assert s.job.token not in text and s.numbers not in text


async def test_ready_is_503_before_the_loop_runs_and_from_the_moment_it_stops(tmp_path: Path) -> None:
    port = free_port()
    async with FakeFoundry(tmp_path) as foundry, aiohttp.ClientSession() as http:
        s = await doubler_streams(foundry, partitions=1)
        env = load_environment(s.job.environ)
        async with FoundryClient(env) as client:
            connector = Doubler(env, client)
            driver = Driver(connector)
            health = HealthServer(driver, port, host="127.0.0.1")
            await health.start()
            try:

                async def ready_status() -> int:
                    async with http.get(f"http://127.0.0.1:{port}/ready") as resp:
                        return resp.status

                assert await ready_status() == 503  # nothing is open yet
                task = asyncio.create_task(driver.serve())

                async def ready() -> bool:
                    return await ready_status() == 200

                await wait_until(ready, "ready", timeout_s=20)
                connector.stop()
                assert await ready_status() == 503  # stopping: not ready any more, even before it ended
                await asyncio.wait_for(task, 20)
                assert await ready_status() == 503
            finally:
                await health.stop()
