"""`FakeFoundry`'s reads and writes of streams, its reads of datasets and media, its waits, and the tasks they watch.

Every wait fails at once, with the connector's own exception, when a connector started by `Job.running` has
died (at start-up, say): a test never waits out its timeout for a connector that is no longer running.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from ._streams.api import stream_path

_PREVIEW = {"preview": "true"}


class FoundryReads:
    """Mixed into `FakeFoundry`: needs its `call` (an admin call that must succeed) and `request`."""

    _watched: list[asyncio.Task[Any]]

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def request(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        raise NotImplementedError

    # Connectors that died.

    def watch(self, task: asyncio.Task[Any]) -> None:
        """Make every wait of this fake fail at once with `task`'s exception when it ends with one."""
        self._watched.append(task)

    def raise_if_failed(self) -> None:
        """Re-raise the exception of a watched connector task that has ended with one (a no-op otherwise)."""
        for task in self._watched:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def wait_until(
        self,
        predicate: Callable[[], Any | Awaitable[Any]],
        *,
        timeout_s: float = 20,
        interval_s: float = 0.05,
        what: str | None = None,
    ) -> Any:
        """Call `predicate` (sync or async) until it returns something truthy, and return that.

        Fails at once with a watched connector's exception when its task dies; AssertionError after
        `timeout_s` naming `what` (default: the predicate). Limits: polls every `interval_s`, so a predicate that
        reads a whole stream each time should stay test-sized.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            self.raise_if_failed()
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            if time.monotonic() > deadline:
                name = what or getattr(predicate, "__name__", repr(predicate))
                raise AssertionError(f"{name} still false after {timeout_s}s (last value {value!r})")
            await asyncio.sleep(interval_s)

    # Streams.

    @staticmethod
    def stream_path(rid: str, suffix: str = "", *, branch: str = "master") -> str:
        """The fake's path of a high-scale stream endpoint: the framework's own builder, under `/api`."""
        return "/api" + stream_path(rid, branch, suffix, high_scale=True)

    async def end_offsets(self, rid: str, *, branch: str = "master") -> dict[str, int]:
        """`{partition: next offset}` of a stream, as the admin (what its writers have written)."""
        body = await self.call("GET", self.stream_path(rid, "/getEndOffsets", branch=branch), params=_PREVIEW)
        return {str(p): int(o) for p, o in body.items()}

    async def read_position(self, rid: str, subscriber_id: str, *, branch: str = "master") -> dict[str, int]:
        """A subscriber's committed read position (what a restarted connector resumes from).

        Raises AssertionError while the subscriber does not exist (before the connector opened its input).
        """
        suffix = f"/subscribers/{quote(subscriber_id, safe='')}/getReadPosition"
        body = await self.call("GET", self.stream_path(rid, suffix, branch=branch), params=_PREVIEW)
        return {str(p): int(o) for p, o in body.items()}

    async def publish(self, rid: str, records: list[dict[str, Any]], *, branch: str = "master") -> None:
        """Publish as the admin (records are not validated by any model here: test bad input freely).

        Limits: sent in requests of 1000 records, not through a stream output, so no batching or linger.
        """
        for start in range(0, len(records), 1000):
            await self.call(
                "POST",
                self.stream_path(rid, "/publishRecords", branch=branch),
                json={"records": records[start : start + 1000]},
            )

    async def records(self, rid: str, *, branch: str = "master") -> list[dict[str, Any]]:
        """Every record of every partition, as `{"partition", "offset", "value"}`, in partition order."""
        ends = await self.end_offsets(rid, branch=branch)
        found: list[dict[str, Any]] = []
        for partition in sorted(ends, key=int):
            offset = 0
            while offset < int(ends[partition]):
                page = await self.call(
                    "GET",
                    self.stream_path(rid, "/getRecords", branch=branch),
                    params={"partitionId": partition, "startOffset": offset, "limit": 1000, "preview": "true"},
                )
                if not page:
                    break
                found += [{"partition": partition, "offset": int(r["offset"]), "value": r["value"]} for r in page]
                offset = int(page[-1]["offset"]) + 1
        return found

    async def wait_for_records(
        self, rid: str, count: int, *, branch: str = "master", timeout_s: float = 20
    ) -> list[dict[str, Any]]:
        """Poll until the stream holds at least `count` records; fail with what it has after `timeout_s`.

        Fails at once with the connector's own exception when a connector `Job.running` started has died.
        Limits: polls every 50 ms and re-reads the whole stream each time, so keep streams test-sized.
        """
        seen: list[list[dict[str, Any]]] = [[]]

        async def enough() -> list[dict[str, Any]] | None:
            seen[0] = await self.records(rid, branch=branch)
            return seen[0] if len(seen[0]) >= count else None

        try:
            await self.wait_until(enough, timeout_s=timeout_s)
            return seen[0]
        except AssertionError:
            raise AssertionError(
                f"stream {rid} has {len(seen[0])} records after {timeout_s}s, expected {count}"
            ) from None

    # Datasets and media sets.

    async def read_dataset(self, rid: str, *, branch: str = "master") -> pa.Table:
        """The dataset's current view as an Arrow table (readTable as the admin); empty with no files yet.

        Limits: the whole table in memory, and only what the fake can read (Parquet files a schema describes).
        """
        status, body = await self.request(
            "GET",
            f"/api/v2/datasets/{quote(rid, safe='')}/readTable",
            params={"format": "ARROW", "branchName": branch},
        )
        if status == 404 or (status < 400 and not body):
            return pa.table({})
        if status >= 400:
            raise AssertionError(f"readTable of {rid} -> {status}: {body}")
        return pa.ipc.open_stream(pa.py_buffer(body)).read_all()

    async def dataset_rows(self, rid: str, *, branch: str = "master") -> list[dict[str, Any]]:
        """The dataset's current view as a list of `{column: value}` rows (see `read_dataset`)."""
        rows: list[dict[str, Any]] = (await self.read_dataset(rid, branch=branch)).to_pylist()
        return rows

    async def read_media(self, rid: str, path: str, *, branch: str = "master") -> bytes | None:
        """The content of the media item at `path` in a media set (None when no item is there)."""
        base = f"/api/v2/mediasets/{quote(rid, safe='')}/items"
        params = {"preview": "true", "branchName": branch}
        found = await self.call("GET", f"{base}/getRidByPath", params={**params, "mediaItemPath": path})
        if not found:
            return None
        content = await self.call("GET", f"{base}/{quote(found['mediaItemRid'], safe='')}/content", params=params)
        return bytes(content) if isinstance(content, bytes | bytearray) else str(content).encode()
