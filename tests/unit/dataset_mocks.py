"""aioresponses scaffolding for the dataset handle unit tests: URLs, binding, and a recording Foundry."""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from framework._env.environment import ResourceRef
from framework._http import FoundryClient
from framework.testing import bind_handle

API = "http://foundry.test/api"
DS = "ri.foundry.main.dataset.0000"
BASE = f"{API}/v2/datasets/{DS}"


def bind(handle: Any, client: FoundryClient) -> Any:
    return bind_handle(handle, client.env, client, ref=ResourceRef(DS, "master"), connector_name="t")


class Foundry:
    """Dataset endpoints on aioresponses that log every call in order."""

    def __init__(self, mock: aioresponses) -> None:
        self.mock = mock
        self.events: list[tuple[str, str]] = []
        self.uploads: dict[str, bytes] = {}
        self.upload_delay = 0.0
        self.upload_started = asyncio.Event()
        self.in_flight = self.max_in_flight = 0
        self.fail_upload: str | None = None
        self.commit_status = 200
        self.conflicts = 0
        self.n = 0
        # putSchema bodies, each with how many `events` preceded it (puts stay out of `events` on purpose).
        self.schema_puts: list[tuple[int, dict[str, Any]]] = []
        self.schema_status = 200
        self.schema_gate: asyncio.Event | None = None  # when set, putSchema waits for it
        mock.post(re.compile(rf"^{re.escape(BASE)}/transactions\?"), callback=self.create, repeat=True)
        mock.post(re.compile(rf"^{re.escape(BASE)}/files/[^/]+/upload\?"), callback=self.upload, repeat=True)
        mock.post(re.compile(rf"^{re.escape(BASE)}/transactions/[^/]+/commit$"), callback=self.commit, repeat=True)
        mock.post(re.compile(rf"^{re.escape(BASE)}/transactions/[^/]+/abort$"), callback=self.abort, repeat=True)
        mock.put(f"{BASE}/putSchema", callback=self.put_schema, repeat=True)

    @staticmethod
    def tx(rid: str, status: str = "OPEN") -> dict[str, Any]:
        return {"rid": rid, "transactionType": "APPEND", "status": status, "createdTime": "2024-01-01T00:00:00Z"}

    def create(self, url: URL, **kwargs: Any) -> CallbackResult:
        if self.conflicts:
            self.conflicts -= 1
            self.events.append(("create", "409"))
            body = {"errorCode": "CONFLICT", "errorName": "OpenTransactionAlreadyExists", "errorInstanceId": "i",
                    "parameters": {"datasetRid": DS, "branchName": "master"}}  # fmt: skip
            return CallbackResult(status=409, payload=body)
        self.n += 1
        rid = f"ri.foundry.main.transaction.{self.n}"
        self.events.append(("create", kwargs["json"]["transactionType"]))
        assert url.query["branchName"] == "master"
        return CallbackResult(payload=self.tx(rid))

    async def upload(self, url: URL, **kwargs: Any) -> CallbackResult:
        path = url.raw_path.split("/files/")[1].removesuffix("/upload")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.upload_started.set()
        await asyncio.sleep(self.upload_delay)
        self.in_flight -= 1
        self.events.append(("upload", path))
        if self.fail_upload and self.fail_upload in path:
            return CallbackResult(status=400, payload={"errorCode": "INVALID_ARGUMENT", "errorName": "Boom"})
        self.uploads[path] = kwargs["data"]
        body = {"path": path, "transactionRid": url.query["transactionRid"], "sizeBytes": len(kwargs["data"]),
                "updatedTime": "2024-01-01T00:00:00Z"}  # fmt: skip
        return CallbackResult(payload=body)

    def commit(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.events.append(("commit", url.path.split("/")[-2]))
        if self.commit_status != 200:
            return CallbackResult(status=self.commit_status, payload={"errorCode": "X", "errorName": "CommitFailed"})
        return CallbackResult(payload=self.tx(url.path.split("/")[-2], "COMMITTED"))

    def abort(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.events.append(("abort", url.path.split("/")[-2]))
        return CallbackResult(payload=self.tx(url.path.split("/")[-2], "ABORTED"))

    async def put_schema(self, url: URL, **kwargs: Any) -> CallbackResult:
        self.schema_puts.append((len(self.events), kwargs["json"]))
        if self.schema_gate is not None:
            await self.schema_gate.wait()
        if self.schema_status != 200:
            return CallbackResult(status=self.schema_status, payload={"errorCode": "X", "errorName": "SchemaBoom"})
        body = {**kwargs["json"], "versionId": f"v{len(self.schema_puts)}"}
        return CallbackResult(payload=body)

    def schemas(self) -> list[dict[str, Any]]:
        """The schemas put, in order."""
        return [body["schema"] for _, body in self.schema_puts]

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]

    def rows(self) -> list[dict[str, Any]]:
        tables = [pq.read_table(io.BytesIO(data)) for _, data in sorted(self.uploads.items())]
        return pa.concat_tables(tables).to_pylist() if tables else []
