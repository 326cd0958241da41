"""Shared fixtures: a real fake Foundry on 127.0.0.1, started and stopped inside each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fake_stream_proxy import FakeServer


class Admin:
    """Thin client for the fake's admin endpoints, and raw calls with any token."""

    def __init__(self, fake: FakeServer, session: aiohttp.ClientSession) -> None:
        self.fake = fake
        self.session = session

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.fake.admin_token}"}

    async def create(self, type_: str, name: str, **extra: Any) -> dict[str, Any]:
        async with self.session.post(
            f"{self.fake.url}/_fake/resources", json={"type": type_, "name": name, **extra}, headers=self.headers
        ) as resp:
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
            return body

    async def job(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
        async with self.session.post(
            f"{self.fake.url}/_fake/jobs", json={"inputs": inputs, "outputs": outputs}, headers=self.headers
        ) as resp:
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
            return body

    async def provenance(self, job_rid: str) -> dict[str, Any]:
        async with self.session.get(
            f"{self.fake.url}/_fake/provenance", params={"jobRid": job_rid}, headers=self.headers
        ) as resp:
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
            return body

    async def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        """Any call as `token` (admin when None); returns (status, parsed JSON or bytes or None)."""
        headers = {"Authorization": f"Bearer {token or self.fake.admin_token}"}
        headers.update(kwargs.pop("headers", {}))
        async with self.session.request(method, f"{self.fake.url}{path}", headers=headers, **kwargs) as resp:
            raw = await resp.read()
            if not raw:
                return resp.status, None
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, raw


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[FakeServer]:
    async with FakeServer(tmp_path / "fake-state") as server:
        yield server


@pytest.fixture
async def admin(fake: FakeServer) -> AsyncIterator[Admin]:
    async with aiohttp.ClientSession() as session:
        yield Admin(fake, session)
