"""What the base class reserves, and when `setup()` / `teardown()` run (clean stop, failure, failed setup)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aioresponses import aioresponses

from framework import Connector, DeadLetterOutput, StreamInput, StreamOutput
from framework._driver import Driver
from framework._errors import ConfigError
from framework._http import FoundryClient

from .stream_mocks import FAST, Doubled, InputStream, Number, Publishes, make_env, wait_for

pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize("attr", ["env", "client", "log", "settings", "setup", "teardown", "sleep", "run", "name"])
def test_a_handle_under_a_reserved_name_fails_at_class_definition(attr: str) -> None:
    with pytest.raises(ConfigError) as caught:
        type("Clash", (Connector,), {attr: StreamOutput[Doubled]("out")})
    message = str(caught.value)
    assert f"Clash.{attr} = StreamOutput('out')" in message and "\n" not in message


def test_names_the_driver_uses_are_free_for_handles(tmp_path: Path) -> None:
    class Free(Connector):
        inputs = StreamInput[Number]("numbers")
        outputs = StreamOutput[Doubled]("doubled")
        dead_letters = DeadLetterOutput("dead_letters")

        async def transform(self, record: Number) -> Doubled:
            return Doubled(twice_x=record.x)

    env = make_env(tmp_path)
    driver = Driver(Free(env, FoundryClient(env)))
    assert driver.mode() == "transform"
    assert [h.alias for h in driver.inputs] == ["numbers"]
    assert driver.default_output is driver.handles["outputs"]
    assert driver.dead_letters is driver.handles["dead_letters"]


class Recording(Connector):
    name = "unit"
    numbers = StreamInput[Number]("numbers")
    doubled = StreamOutput[Doubled]("doubled")
    fail_setup = False
    fail_at: int | None = None

    async def setup(self) -> None:
        self.calls = ["setup"]
        if self.fail_setup:
            raise RuntimeError("setup failed")

    async def teardown(self) -> None:
        self.calls.append("teardown")

    async def transform(self, record: Number) -> Doubled:
        if record.x == self.fail_at:
            raise ValueError(f"cannot double {record.x}")
        return Doubled(twice_x=2 * record.x)


async def test_teardown_runs_after_a_clean_stop(tmp_path: Path, mock: aioresponses) -> None:
    env = make_env(tmp_path)
    stream = InputStream(mock, "numbers", {"0": [(0, {"x": 1})]})
    Publishes(mock, "doubled")
    async with FoundryClient(env, retry=FAST) as client:
        connector = Recording(env, client)
        task = asyncio.create_task(Driver(connector).serve())
        await wait_for(lambda: stream.position == {"0": 1}, "the commit")
        connector.stop()
        await asyncio.wait_for(task, 5)
    assert connector.calls == ["setup", "teardown"]


async def test_teardown_runs_after_a_failure_and_the_failure_is_raised(tmp_path: Path, mock: aioresponses) -> None:
    env = make_env(tmp_path)
    InputStream(mock, "numbers", {"0": [(0, {"x": 3})]})
    Publishes(mock, "doubled")
    async with FoundryClient(env, retry=FAST) as client:
        connector = Recording(env, client)
        connector.fail_at = 3
        with pytest.raises(ValueError, match="cannot double 3"):
            await asyncio.wait_for(Driver(connector).serve(), 5)
    assert connector.calls == ["setup", "teardown"]


async def test_no_teardown_when_setup_fails(tmp_path: Path, mock: aioresponses) -> None:
    env = make_env(tmp_path)
    InputStream(mock, "numbers", {"0": []})
    Publishes(mock, "doubled")
    async with FoundryClient(env, retry=FAST) as client:
        connector = Recording(env, client)
        connector.fail_setup = True
        with pytest.raises(RuntimeError, match="setup failed"):
            await asyncio.wait_for(Driver(connector).serve(), 5)
    assert connector.calls == ["setup"]
