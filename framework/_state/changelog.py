"""The changelog stream of a state handle: its entries, its publisher's stop after a failure, reading it back,
and the split of a restore among workers."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .._errors import ConfigError, ConnectorError
from .._handles import Handle
from .._streams.api import get_stream, is_view_gone, stream_path

if TYPE_CHECKING:
    from .._env.settings import RuntimeSettings
    from .._http import FoundryClient

#: getRecords pages while restoring; the server may cap it lower (the fake and Foundry: 1000).
RESTORE_PAGE = 1000
#: Bounds a restore's loop: a changelog longer than this is refused rather than read forever.
MAX_RESTORE_PAGES = 10_000_000


class ChangelogEntry(BaseModel):
    """One input record's changes to one state handle: what the changelog stream holds.

    `changes` is JSON `[[key, value-or-null], ...]` (null deletes); `time_ms` the record's event time
    (windows: it advances its partition's watermark); `effects` JSON of what processing the record returned
    (windows closed, a late record) so a record re-read after a crash returns it again; `late` marks a
    record that was too late for any window.
    """

    source: str
    partition: str
    offset: int
    changes: str
    time_ms: int | None = None
    effects: str | None = None
    late: bool = False

    @functools.cached_property
    def changed(self) -> list[tuple[str, str | None]]:
        """`changes` decoded, once (a worker's restore reads an entry's keys, then applies it)."""
        return [(str(key), value) for key, value in json.loads(self.changes)]


class StopAfterFailure:
    """The changelog's client: after one failed publishRecords request, every later one fails with the same
    error without being sent. A changelog must stay a prefix of what was processed, or a restore would skip
    the records of a lost request after a later one was kept. It wraps the client's public `request_json`
    (composition: the stream output's internals are not touched); everything else is the client's own."""

    def __init__(self, client: FoundryClient) -> None:
        self._client = client
        self.broken: BaseException | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        publishing = path.endswith("/publishRecords")
        if publishing and self.broken is not None:
            raise self.broken
        try:
            return await self._client.request_json(method, path, **kwargs)
        except Exception as exc:
            if publishing and not is_view_gone(exc):  # a reset stream is re-published into its new view
                self.broken = exc
            raise


class Split:
    """A worker's restore of the shared changelog: it applies the entries of its own partitions only, and
    refuses to start when a key was changed from partitions of two workers (its state would be split)."""

    def __init__(self, alias: str, runtime: RuntimeSettings, keys: Callable[[ChangelogEntry], Iterable[str]]) -> None:
        self.alias, self.runtime, self.keys = alias, runtime, keys
        self.owners: dict[str, tuple[int, str]] = {}  # key -> (worker owning it, a partition that changed it)

    def mine(self, entry: ChangelogEntry) -> bool:
        try:
            partition = int(entry.partition)
        except ValueError:
            return True  # not an input position of a stream: every worker applies it
        worker = partition % self.runtime.workers
        for key in self.keys(entry):
            owner = self.owners.setdefault(key, (worker, entry.partition))
            if owner[0] != worker:
                raise ConfigError(
                    f"CONNECTOR_WORKERS={self.runtime.workers}: state {self.alias!r} has key {key!r} changed by "
                    f"records of partitions {owner[1]} and {entry.partition}, which belong to different workers, so "
                    "its state cannot be split among them: key the input stream by the state's key, or run one worker"
                )
        return worker == self.runtime.worker_index


async def read_changelog(handle: Handle, *, start: int = 0) -> AsyncIterator[ChangelogEntry]:
    """Every entry of the handle's changelog stream from offset `start`, in order (it has one partition)."""
    info = await get_stream(handle)
    path = stream_path(handle.rid, handle.branch, "/getRecords", high_scale=True)
    for partition in range(info.partitions):
        offset = start
        for _ in range(MAX_RESTORE_PAGES):
            params: dict[str, str | int | bool | None] = {
                "partitionId": str(partition),
                "startOffset": offset,
                "limit": RESTORE_PAGE,
                "preview": True,
                "viewRid": info.view_rid or None,
            }
            page = await handle.client.request_json("GET", path, service="stream_proxy", params=params)
            if not page:
                break
            for record in page:
                yield ChangelogEntry.model_validate(record["value"])
            offset = int(page[-1]["offset"]) + 1
        else:
            raise ConnectorError(f"state {handle.alias!r}: changelog longer than {MAX_RESTORE_PAGES} pages")
