"""Media set inputs and outputs: items by path or rid, streamed both ways.

The v2 API has no list-items call, so these handles look items up by path (`get_rid`) or rid only.
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .._errors import ConfigError, ConnectorError, MediaItemPathError, NotFoundError, PermissionDeniedError
from .._handles import Handle, settle, track
from .._io import CHUNK_BYTES, Body, upload_body, write_atomically

MAX_PATH_CHARS = 255  # Foundry: a media item path must be shorter than 256 characters
_CHECK_PATH = ".connector-check"  # looked up by check(); it need not exist


def media_path(rid: str, *segments: str) -> str:
    return "/".join(["/v2/mediasets", quote(rid, safe=""), *(quote(s, safe="") for s in segments)])


def is_item_rid(value: str) -> bool:
    return value.startswith("ri.mio.") and ".media-item." in value


def check_item_path(path: str) -> str:
    if not path:
        raise MediaItemPathError("a media item path must not be empty")
    if len(path) > MAX_PATH_CHARS:
        raise MediaItemPathError(
            f"media item path is {len(path)} characters; Foundry allows at most {MAX_PATH_CHARS}: {path[:60]}..."
        )
    return path


def _transaction_id(body: Any) -> str:
    """Create-transaction answers a bare JSON string or `{"transactionId": ...}`: accept both."""
    if isinstance(body, dict):
        body = body.get("transactionId")
    if isinstance(body, bytes):
        body = body.decode().strip().strip('"')
    if not isinstance(body, str) or not body:
        raise ConnectorError(f"unexpected create-transaction response: {body!r}")
    return body


@dataclass(frozen=True)
class MediaItemInfo:
    """What `GET items/{rid}` says about an item."""

    rid: str
    path: str | None
    mime_type: str | None
    size_bytes: int | None
    view_rid: str | None
    logical_timestamp: int | None

    @classmethod
    def from_json(cls, rid: str, body: dict[str, Any]) -> MediaItemInfo:
        size = body.get("sizeBytesLong", body.get("sizeBytes"))
        stamp = body.get("logicalTimestamp")
        return cls(
            rid,
            body.get("path"),
            body.get("mimeType"),
            int(size) if size is not None else None,
            body.get("viewRid"),
            int(stamp) if stamp is not None else None,
        )


class _MediaReads(Handle):
    """Lookups and reads shared by inputs and outputs (a job may read its own outputs)."""

    kind = "media_set"

    def __init__(self, alias: str, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        super().__init__(alias)
        self.chunk_bytes = chunk_bytes

    async def check(self) -> None:
        """Look up a path that need not exist: proves the media set is reachable without moving data."""
        try:
            await self.get_rid(_CHECK_PATH)
        except (NotFoundError, PermissionDeniedError) as err:
            raise ConfigError(
                f"media set {self.direction} {self.alias!r} ({self.rid}, branch {self.branch!r}) is not reachable: "
                f"{err.error_name}; check RESOURCE_ALIAS_MAP and that the job declares it"
            ) from err

    async def get_rid(self, path: str) -> str | None:
        """The rid of the item at `path` on this branch, or None when there is none."""
        body = await self.client.request_json(
            "GET",
            media_path(self.rid, "items", "getRidByPath"),
            params={"mediaItemPath": check_item_path(path), "branchName": self.branch, "preview": True},
        )
        rid = body.get("mediaItemRid") if isinstance(body, dict) else None
        return rid if isinstance(rid, str) else None

    async def info(self, item_rid: str) -> MediaItemInfo:
        body = await self.client.request_json("GET", media_path(self.rid, "items", item_rid))
        return MediaItemInfo.from_json(item_rid, body)

    async def resolve(self, item: str) -> str:
        """An item rid as is, or the rid of the item at a path (NotFoundError when there is none)."""
        if is_item_rid(item):
            return item
        rid = await self.get_rid(item)
        if rid is None:
            raise NotFoundError(404, "NOT_FOUND", "MediaItemNotFound", {"mediaSetRid": self.rid, "mediaItemPath": item})
        return rid

    async def read(self, item: str) -> bytes:
        """An item's content, whole, by rid or path (use `open_item` for large items)."""
        data = await self.client.request_bytes(
            "GET", media_path(self.rid, "items", await self.resolve(item), "content")
        )
        self.metrics.bytes += len(data)
        self.metrics.records += 1
        return data

    async def open_item(self, item: str) -> AsyncIterator[bytes]:
        """An item's content in chunks of at most `chunk_bytes`, as it downloads (never whole in memory)."""
        rid = await self.resolve(item)
        async with self.client.stream("GET", media_path(self.rid, "items", rid, "content")) as resp:
            async for chunk in resp.content.iter_chunked(self.chunk_bytes):
                self.metrics.bytes += len(chunk)
                yield chunk
        self.metrics.records += 1

    async def download(self, item: str, dest: Path) -> int:
        """Stream an item to `dest` (written to a temporary name, then renamed); returns its size."""
        return await write_atomically(self.open_item(item), Path(dest))


class MediaSetInput(_MediaReads):
    """A media set the job reads: `get_rid(path)`, `info(rid)`, `read`, `open_item` (streamed), `download`."""

    direction = "input"


def _idle_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


@dataclass
class MediaTransaction:
    """An open media-set transaction; uploads made while it is open join it."""

    id: str
    acks: list[asyncio.Future[None]] = field(default_factory=list)
    failed: BaseException | None = None
    closed: bool = False  # committing or aborted: no more uploads
    aborted: bool = False
    inflight: int = 0
    idle: asyncio.Event = field(default_factory=_idle_event)


class MediaSetOutput(_MediaReads):
    """A media set the job writes: `upload(path, body)` returns the new item's rid (last write to a path wins).

    With `transactional=True` (for media sets whose policy requires transactions) each upload outside a
    `transaction()` block gets its own transaction. Inside `async with output.transaction():` uploads join
    one transaction that commits on clean exit only if every upload succeeded, and aborts otherwise; their
    acks resolve at the commit. Outside a transaction an upload's ack resolves once the server has it.
    `get_rid` and `info` work here too, so an ingest can skip files it already uploaded.
    """

    direction = "output"

    def __init__(self, alias: str, *, transactional: bool = False, chunk_bytes: int = CHUNK_BYTES) -> None:
        super().__init__(alias, chunk_bytes=chunk_bytes)
        self.transactional = transactional

    def _on_bind(self) -> None:
        self._tx: MediaTransaction | None = None
        self._tx_lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MediaTransaction]:
        """One media-set transaction: committed on clean exit if every upload in it succeeded, else aborted."""
        async with self._tx_lock:
            body = await self.client.request_json(
                "POST", media_path(self.rid, "transactions"), params={"branchName": self.branch, "preview": True}
            )
            tx = self._tx = MediaTransaction(_transaction_id(body))
            try:
                yield tx
                await tx.idle.wait()  # uploads started in other tasks land (or fail) first
                if tx.aborted:
                    raise ConnectorError(f"media transaction {tx.id} was aborted (output closed) before its commit")
                if tx.failed is not None:
                    raise ConnectorError(f"media transaction {tx.id} had a failed upload; aborted") from tx.failed
                tx.closed = True
                await self._end(tx, "commit")
            except BaseException as err:
                try:
                    await asyncio.shield(self._abort(tx))  # runs to the end even if we are cancelled again
                finally:
                    settle(tx.acks, err)
                raise
            finally:
                self._tx = None
            settle(tx.acks)

    async def _end(self, tx: MediaTransaction, action: str) -> None:
        await self.client.request_json(
            "POST", media_path(self.rid, "transactions", tx.id, action), params={"preview": True}
        )
        self.log.debug(f"media transaction {action}ed", transaction=tx.id, items=len(tx.acks))

    async def _abort(self, tx: MediaTransaction) -> None:
        """Abort once (a commit that failed midway is aborted too); a failure to abort is only logged."""
        if tx.aborted:
            return
        tx.aborted = tx.closed = True
        try:
            await self._end(tx, "abort")
        except Exception as err:  # the original failure matters more
            self.log.warning("media transaction abort failed", transaction=tx.id, error=str(err))

    async def close(self) -> None:
        """Abort a transaction still open (its uploads never become visible; their acks fail)."""
        tx = self._tx
        if tx is not None and not tx.aborted:
            await self._abort(tx)
            settle(tx.acks, ConnectorError(f"output {self.alias!r} closed before media transaction {tx.id} committed"))

    async def upload(self, path: str, body: Body, *, mime_type: str | None = None) -> str:
        """Upload one item (bytes, a local file, or an async iterable of bytes); returns its rid.

        The MIME type is guessed from `path` when not given.
        """
        check_item_path(path)
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ack.add_done_callback(lambda f: f.cancelled() or f.exception())
        track(ack)
        try:
            if self._tx is None and self.transactional:
                async with self.transaction() as tx:
                    return await self._upload_into(tx, path, body, mime_type, ack)
            return await self._upload_into(self._tx, path, body, mime_type, ack)
        except BaseException as err:
            settle([ack], err)
            raise

    async def _upload_into(
        self, tx: MediaTransaction | None, path: str, body: Body, mime_type: str | None, ack: asyncio.Future[None]
    ) -> str:
        """In a transaction the ack waits for its commit; outside one it resolves once the item is stored."""
        if tx is None:
            rid = await self._put(path, body, mime_type, None)
            ack.set_result(None)
            return rid
        if tx.closed:
            raise ConnectorError(f"media transaction {tx.id} is already closed")
        tx.acks.append(ack)
        tx.inflight += 1
        tx.idle.clear()
        try:
            return await self._put(path, body, mime_type, tx)
        finally:
            tx.inflight -= 1
            if not tx.inflight:
                tx.idle.set()

    async def _put(self, path: str, body: Body, mime_type: str | None, tx: MediaTransaction | None) -> str:
        content_type = mime_type or mimetypes.guess_type(path)[0] or "application/octet-stream"
        params: dict[str, str | bool | None] = {
            "mediaItemPath": path,
            "branchName": self.branch,
            "preview": True,
            "transactionId": tx.id if tx is not None else None,
        }
        try:
            result = await self.client.upload(
                "POST",
                media_path(self.rid, "items"),
                body=upload_body(body, self.chunk_bytes),
                params=params,
                content_type=content_type,
            )
        except BaseException as err:
            if tx is not None:
                tx.failed = tx.failed or err
            raise
        rid = result.get("mediaItemRid") if isinstance(result, dict) else None
        if not isinstance(rid, str):
            raise ConnectorError(f"unexpected media upload response: {result!r}")
        self.metrics.records += 1
        self.metrics.bytes += len(body) if isinstance(body, bytes) else 0
        return rid
