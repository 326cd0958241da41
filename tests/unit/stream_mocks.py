"""aioresponses scaffolding for the stream handle and connector unit tests: URLs, an environment, recorders."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aioresponses import CallbackResult, aioresponses
from pydantic import BaseModel
from yarl import URL

from framework._env.environment import Environment, ResourceRef, RuntimeSettings
from framework._handles import Handle
from framework._http import FoundryClient, RetryPolicy
from framework._streams.api import stream_path
from framework.testing import bind_handle

API = "http://foundry.test/api"
PROXY = "http://foundry.test/stream-proxy/api"
RIDS = {
    alias: f"ri.foundry.main.dataset.{alias}"
    for alias in ("numbers", "doubled", "dead_letters", "slow", "fast", "other")
}
TOKEN = "unit-test-token-value"

H = TypeVar("H", bound=Handle)
FAST = RetryPolicy(max_attempts=2, initial_backoff_s=0.001, max_backoff_s=0.002)


class Number(BaseModel):
    x: int


class Doubled(BaseModel):
    twice_x: int


def make_env(tmp_path: Path, **runtime: str) -> Environment:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    return Environment(
        token_path=token,
        alias_map_path=tmp_path / "aliases.json",
        aliases={alias: ResourceRef(rid) for alias, rid in RIDS.items()},
        api_base=API,
        stream_proxy_base=PROXY,
        ca_path=None,
        runtime=RuntimeSettings.load({"CONNECTOR_POLL_INTERVAL_MS": "5", **runtime}),
    )


def bind(handle: H, env: Environment, client: FoundryClient, name: str = "unit") -> H:
    return bind_handle(handle, env, client, connector_name=name)


def stream_url(alias: str) -> str:
    return f"{API}{stream_path(RIDS[alias], 'master')}"


def hs_url(alias: str, suffix: str) -> str:
    return f"{PROXY}{stream_path(RIDS[alias], 'master', suffix, high_scale=True)}"


def pattern(url: str) -> re.Pattern[str]:
    """`url` with any query string."""
    return re.compile(re.escape(url) + r"(\?.*)?$")


def sub_pattern(alias: str, action: str) -> re.Pattern[str]:
    """A subscriber action of any subscriber id, with any query string."""
    return re.compile(re.escape(hs_url(alias, "/subscribers/")) + r"[^/?]+/" + action + r"(\?.*)?$")


def mock_stream(mock: aioresponses, alias: str, partitions: int = 1) -> None:
    body = {"branchName": "master", "schema": {"fields": []}, "viewRid": f"view.{alias}", "partitionsCount": partitions}
    mock.get(stream_url(alias), payload=body, repeat=True)


def body_of(kwargs: dict[str, Any]) -> Any:
    """A request's JSON body, whether sent as `json=` or as raw JSON bytes (`data=`, how records are published)."""
    if kwargs.get("json") is not None:
        return kwargs["json"]
    data = kwargs.get("data")
    return json.loads(data) if data else None


def params_of(kwargs: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (kwargs.get("params") or [])}


def envelope(status: int, name: str, **parameters: Any) -> dict[str, Any]:
    codes = {400: "INVALID_ARGUMENT", 401: "UNAUTHORIZED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}
    return {"errorCode": codes.get(status, "X"), "errorName": name, "errorInstanceId": "i", "parameters": parameters}


class Publishes:
    """publishRecords / publishRecord of `alias`, recording acknowledged bodies. `gate` holds responses until
    set; `reject(record)` true answers 400 RecordDoesNotMatchStreamSchema (for a batch: if any is rejected);
    `fail_status` answers every publish with that error."""

    def __init__(
        self,
        mock: aioresponses,
        alias: str,
        *,
        reject: Callable[[dict[str, Any]], bool] | None = None,
        fail_status: int | None = None,
        fail_name: str = "PublishRecordsToStreamPermissionDenied",
    ) -> None:
        self.batches: list[list[dict[str, Any]]] = []  # acknowledged publishRecords bodies
        self.singles: list[dict[str, Any]] = []  # acknowledged publishRecord bodies
        self.attempts = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self._reject = reject
        self._fail_status = fail_status
        self._fail_name = fail_name
        mock_stream(mock, alias)
        mock.post(pattern(hs_url(alias, "/publishRecords")), callback=self._batch, repeat=True)
        mock.post(pattern(hs_url(alias, "/publishRecord")), callback=self._single, repeat=True)

    async def _batch(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.attempts += 1
        await self.gate.wait()
        if self._fail_status is not None:
            return CallbackResult(status=self._fail_status, payload=envelope(self._fail_status, self._fail_name))
        records: list[dict[str, Any]] = body_of(kwargs)["records"]
        if self._reject is not None and any(self._reject(r) for r in records):
            return CallbackResult(status=400, payload=envelope(400, "RecordDoesNotMatchStreamSchema"))
        self.batches.append(records)
        return CallbackResult(status=204)

    async def _single(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.attempts += 1
        await self.gate.wait()
        if self._fail_status is not None:
            return CallbackResult(status=self._fail_status, payload=envelope(self._fail_status, self._fail_name))
        record: dict[str, Any] = kwargs["json"]["record"]
        if self._reject is not None and self._reject(record):
            return CallbackResult(status=400, payload=envelope(400, "RecordDoesNotMatchStreamSchema"))
        self.singles.append(record)
        return CallbackResult(status=204)

    @property
    def records(self) -> list[dict[str, Any]]:
        return [r for batch in self.batches for r in batch] + self.singles


class InputStream:
    """A mocked input stream: subscriber create / getReadPosition / readRecords / commitOffsets, getRecords and
    getEndOffsets over `records` ({partition: [(offset, value)]}; offsets may be strings, as Foundry may send)."""

    def __init__(
        self,
        mock: aioresponses,
        alias: str,
        records: dict[str, list[tuple[int | str, Any]]],
        *,
        position: dict[str, int] | None = None,
    ) -> None:
        self.records = records
        self.position = dict(position or dict.fromkeys(records, 0))
        self.calls: list[str] = []  # "readRecords" / "getRecords" / "commitOffsets" ... in order
        self.get_params: list[dict[str, str]] = []
        self.read_bodies: list[dict[str, Any]] = []
        self.commits: list[dict[str, int]] = []
        self.subscriber_ids: list[str] = []
        self.commit_gate = asyncio.Event()
        self.commit_gate.set()
        mock_stream(mock, alias, len(records))
        mock.post(pattern(stream_url(alias) + "/subscribers"), callback=self._create, repeat=True)
        mock.get(sub_pattern(alias, "getReadPosition"), callback=self._position, repeat=True)
        mock.post(sub_pattern(alias, "readRecords"), callback=self._read, repeat=True)
        mock.post(sub_pattern(alias, "commitOffsets"), callback=self._commit, repeat=True)
        mock.get(pattern(hs_url(alias, "/getRecords")), callback=self._get, repeat=True)
        mock.get(pattern(hs_url(alias, "/getEndOffsets")), callback=self._ends, repeat=True)

    def _entries(self, partition: str, start: int, limit: int) -> list[dict[str, Any]]:
        found = [(o, v) for o, v in self.records.get(partition, []) if int(o) >= start]
        return [{"offset": o, "value": v} for o, v in found[:limit]]

    def _create(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.calls.append("createSubscriber")
        self.subscriber_ids.append(kwargs["json"]["subscriberId"])
        return CallbackResult(payload={"subscriberId": kwargs["json"]["subscriberId"]})

    def _position(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.calls.append("getReadPosition")
        return CallbackResult(payload=self.position)

    def _read(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.calls.append("readRecords")
        body = kwargs.get("json") or {}
        self.read_bodies.append(body)
        limit = int(body.get("limit", 100))
        available = {p: self._entries(p, self.position.get(p, 0), limit) for p in sorted(self.records)}
        taken: dict[str, list[dict[str, Any]]] = {}
        for index in range(limit):  # `limit` is for all partitions together, shared round robin
            for partition, entries in available.items():
                if index < len(entries) and sum(map(len, taken.values())) < limit:
                    taken.setdefault(partition, []).append(entries[index])
        return CallbackResult(payload={"recordsByPartition": taken})

    def _get(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.calls.append("getRecords")
        params = params_of(kwargs)
        self.get_params.append(params)
        entries = self._entries(params["partitionId"], int(params["startOffset"]), int(params["limit"]))
        return CallbackResult(body=json.dumps(entries), content_type="application/json")  # a JSON array

    async def _commit(self, url: URL, **kwargs: Any) -> CallbackResult:
        await self.commit_gate.wait()
        self.calls.append("commitOffsets")
        offsets = {str(p): int(o) for p, o in kwargs["json"]["offsets"].items()}
        self.commits.append(offsets)
        self.position.update({p: o + 1 for p, o in offsets.items()})
        return CallbackResult(payload={p: o + 1 for p, o in offsets.items()})

    def _ends(self, url: URL, **kwargs: Any) -> CallbackResult:
        ends = {p: (int(entries[-1][0]) + 1 if entries else 0) for p, entries in self.records.items()}
        return CallbackResult(payload=ends)


async def wait_for(check: Callable[[], bool | Awaitable[bool]], what: str, timeout_s: float = 3) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.005)
