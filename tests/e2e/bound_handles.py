"""Bind dataset and media handles to a fake job without a Connector: token and alias map files, then `bind`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from fake_stream_proxy import FakeServer
from framework._env.environment import Environment, ResourceRef, load_environment
from framework._handles import Handle
from framework._http import FoundryClient, RetryPolicy
from framework.testing import bind_handle

H = TypeVar("H", bound=Handle)


class Job:
    """A fake job's environment and client; `job.bind(handle)` returns the bound copy."""

    def __init__(self, env: Environment, client: FoundryClient, info: dict[str, Any]) -> None:
        self.env, self.client, self.info = env, client, info

    def bind(self, handle: H, ref: ResourceRef | None = None) -> H:
        """Bound to its alias, or to `ref` (e.g. a resource the job did not declare)."""
        return bind_handle(handle, self.env, self.client, ref=ref)


@asynccontextmanager
async def job_env(
    tmp_path: Path, fake: FakeServer, info: dict[str, Any], name: str = "job", extra: dict[str, str] | None = None
) -> AsyncIterator[Job]:
    """`info` is what `admin.job(...)` returned; `extra` more environment (e.g. CONNECTOR_WORKER_INDEX)."""
    token, alias_map = tmp_path / f"{name}-token", tmp_path / f"{name}-aliases.json"
    token.write_text(info["token"] + "\n")
    alias_map.write_text(json.dumps(info["resourceAliasMap"]))
    environ = {"BUILD2_TOKEN": str(token), "RESOURCE_ALIAS_MAP": str(alias_map), "FOUNDRY_URL": fake.url}
    env = load_environment({**environ, **(extra or {})})
    async with FoundryClient(env, retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.01)) as client:
        yield Job(env, client, info)
