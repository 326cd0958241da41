"""Unit-test fixtures shared by every file that mocks HTTP with aioresponses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from framework._env.environment import Environment, RuntimeSettings
from framework._http import FoundryClient, RetryPolicy


class _SentWriter:
    output_size = 0


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 does not pass the `stream_writer` aiohttp 3.14 requires (aioresponses issue #289)."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _SentWriter())
        super().__init__(method, url, **kwargs)


@pytest.fixture(autouse=True)
def _aioresponses_compat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aioresponses.core.ClientResponse", _CompatResponse)


@pytest.fixture
def mock() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


@pytest.fixture
def env(tmp_path: Path) -> Environment:
    """A plain environment on a mocked host; stream and HTTP tests override it with their own."""
    token = tmp_path / "token"
    token.write_text("tok\n")
    api = "http://foundry.test/api"
    return Environment(token, tmp_path / "aliases.json", {}, api, f"{api}/sp", None, RuntimeSettings.load({}))


@pytest.fixture
def retry_policy() -> RetryPolicy:
    """Retries without real waiting; a test module overrides this fixture to change it."""
    return RetryPolicy(max_attempts=2, initial_backoff_s=0.001, max_backoff_s=0.002)


@pytest.fixture
async def client(env: Environment, retry_policy: RetryPolicy) -> AsyncIterator[FoundryClient]:
    """A client on the module's `env` fixture."""
    async with FoundryClient(env, retry=retry_policy) as c:
        yield c
