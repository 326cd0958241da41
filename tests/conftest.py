"""Shared fixtures: a real fake Foundry on 127.0.0.1, started and stopped inside each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fake_stream_proxy import FakeServer
from framework.testing import FakeFoundry


class Admin:
    """`FakeFoundry`'s admin client over the `fake` fixture's server, in the shape the wire tests use:
    `call` answers `(status, body)` for any token, and never raises on an error status."""

    def __init__(self, fake: FakeServer, session: aiohttp.ClientSession) -> None:
        self.fake = fake
        self.foundry = FakeFoundry(fake.state_dir, url=fake.url, admin_token=fake.admin_token, session=session)

    @property
    def session(self) -> aiohttp.ClientSession:
        return self.foundry.session

    @property
    def headers(self) -> dict[str, str]:
        return self.foundry.admin_headers

    async def create(self, type_: str, name: str, **extra: Any) -> dict[str, Any]:
        return await self._ok("POST", "/_fake/resources", json={"type": type_, "name": name, **extra})

    async def job(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
        return await self._ok("POST", "/_fake/jobs", json={"inputs": inputs, "outputs": outputs})

    async def provenance(self, job_rid: str) -> dict[str, Any]:
        return await self._ok("GET", "/_fake/provenance", params={"jobRid": job_rid})

    async def _ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        status, body = await self.foundry.request(method, path, **kwargs)
        assert status == 200, body
        assert isinstance(body, dict), body
        return body

    async def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        """Any call as `token` (admin when None); returns (status, parsed JSON or bytes or None)."""
        return await self.foundry.request(method, path, token, **kwargs)


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeServer]:
    async with FakeServer(tmp_path / "fake-state") as server:
        yield server


@pytest.fixture
async def admin(fake: FakeServer) -> AsyncIterator[Admin]:
    async with aiohttp.ClientSession() as session:
        yield Admin(fake, session)
