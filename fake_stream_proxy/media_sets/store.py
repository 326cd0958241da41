"""Media sets in SQLite, and the Media Sets API's actions on them.

A transactional set needs `transactionId` on uploads, and its items appear only on commit; in a
non-transactional set an upload without one is visible at once. The last write to a path wins: every
item that becomes visible gets a logical timestamp strictly after all earlier ones in its set.

Clearing a path hides every item then at it (by path and by rid, as the SDK documents); in a
transaction the clear waits for the commit, which applies uploads and clears in the order they were made.
Temporary uploads (`media/upload`) land in one hidden, non-transactional set the fake makes on first use.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from ..auth import Principal
from ..errors import bad_request, conflict, not_found
from ..ids import new_rid, now_iso
from ..provenance import Provenance
from ..storage import Storage
from .models import (
    ITEM_RID,
    MAX_PATH_CHARS,
    PATHS_IN_PROVENANCE,
    SCHEMA,
    TEMPORARY_SET_RID,
    MediaItem,
    MediaSet,
    MediaTransaction,
    item_from_row,
)


class MediaSetStore:
    def __init__(self, storage: Storage, provenance: Provenance) -> None:
        self.storage = storage
        self.provenance = provenance
        storage.ensure_schema(SCHEMA)

    # Media sets and branches

    def create(
        self, name: str, folder: str | None, transactional: bool, paths_required: bool, media_schema: str
    ) -> tuple[str, str]:
        """A new media set with its master branch; returns (rid, master's view rid)."""
        rid = new_rid("mio", "media-set")
        with self.storage.transaction():
            self.storage.insert_resource(rid, "media_set", name, folder)
            self.storage.execute(
                "INSERT INTO ms_sets (rid, transactional, paths_required, media_schema) VALUES (?, ?, ?, ?)",
                (rid, transactional, paths_required, media_schema),
            )
            return rid, self.ensure_branch(rid, "master")

    def media_set(self, rid: str) -> MediaSet:
        row = self.storage.one("SELECT * FROM ms_sets WHERE rid = ?", (rid,))
        if row is None:
            raise not_found("MediaSetNotFound", mediaSetRid=rid)
        return MediaSet(rid, bool(row["transactional"]), bool(row["paths_required"]), row["media_schema"])

    def _view_rid(self, rid: str, branch: str) -> str | None:
        row = self.storage.one("SELECT view_rid FROM ms_branches WHERE media_set_rid = ? AND name = ?", (rid, branch))
        return None if row is None else str(row["view_rid"])

    def ensure_branch(self, rid: str, branch: str) -> str:
        """Media-set branches come into being on first write; each has one view. Returns its rid."""
        existing = self._view_rid(rid, branch)
        if existing is not None:
            return existing
        view_rid = new_rid("mio", "view")
        self.storage.execute(
            "INSERT INTO ms_branches (media_set_rid, name, view_rid) VALUES (?, ?, ?)", (rid, branch, view_rid)
        )
        return view_rid

    def branch_of_view(self, rid: str, view_rid: str) -> str:
        row = self.storage.one("SELECT name FROM ms_branches WHERE media_set_rid = ? AND view_rid = ?", (rid, view_rid))
        if row is None:
            raise not_found("Default:NotFound", mediaSetRid=rid, viewRid=view_rid)
        return str(row["name"])

    # Transactions

    def txn(self, rid: str, txn_id: str) -> MediaTransaction:
        row = self.storage.one("SELECT * FROM ms_transactions WHERE id = ? AND media_set_rid = ?", (txn_id, rid))
        if row is None:
            raise not_found("TransactionNotFound", mediaSetRid=rid, transactionId=txn_id)
        return MediaTransaction(row["id"], row["media_set_rid"], row["branch"], row["status"])

    def open_txn(self, rid: str, txn_id: str) -> MediaTransaction:
        txn = self.txn(rid, txn_id)
        if txn.status != "OPEN":
            raise bad_request("TransactionNotOpen", mediaSetRid=rid, transactionId=txn_id, transactionStatus=txn.status)
        return txn

    def create_txn(self, rid: str, branch: str) -> str:
        """A second open transaction on a branch is 409 `MediaSetOpenTransactionAlreadyExists`."""
        txn_id = str(uuid.uuid4())
        try:
            with self.storage.transaction():
                self.ensure_branch(rid, branch)
                self.storage.execute(
                    "INSERT INTO ms_transactions (id, media_set_rid, branch, status, created_time)"
                    " VALUES (?, ?, ?, 'OPEN', ?)",
                    (txn_id, rid, branch, now_iso()),
                )
        except sqlite3.IntegrityError:
            raise conflict("MediaSetOpenTransactionAlreadyExists", mediaSetRid=rid) from None
        return txn_id

    def _close(self, txn: MediaTransaction, status: str) -> list[MediaItem]:
        """OPEN -> `status`; returns the transaction's items in upload order. Call inside a storage transaction."""
        self.open_txn(txn.media_set_rid, txn.id)
        rows = self.storage.query("SELECT * FROM ms_items WHERE transaction_id = ? ORDER BY seq", (txn.id,))
        self.storage.execute(
            "UPDATE ms_transactions SET status = ?, closed_time = ? WHERE id = ?", (status, now_iso(), txn.id)
        )
        return [item_from_row(r) for r in rows]

    def commit(self, principal: Principal, txn: MediaTransaction) -> None:
        with self.storage.transaction():
            items = self._close(txn, "COMMITTED")
            clears = self.storage.query(
                "SELECT path, after_seq FROM ms_pending_clears WHERE transaction_id = ? ORDER BY after_seq, rowid",
                (txn.id,),
            )
            pending = [(int(c["after_seq"]), str(c["path"])) for c in clears]
            for seq, item in self._items_with_seq(txn.id, items):  # in upload order: a later write to a path wins
                while pending and pending[0][0] < seq:
                    self._hide_path(txn.media_set_rid, txn.branch, pending.pop(0)[1])
                self.storage.execute(
                    "UPDATE ms_items SET visible = 1, logical_timestamp = ? WHERE rid = ?",
                    (self._next_timestamp(txn.media_set_rid), item.rid),
                )
            for _, path in pending:
                self._hide_path(txn.media_set_rid, txn.branch, path)
            self.storage.execute("DELETE FROM ms_pending_clears WHERE transaction_id = ?", (txn.id,))
            self.provenance.record(
                principal, rid=txn.media_set_rid, branch=txn.branch, operation="commitMediaTransaction",
                direction="write", record_count=len(items), transactionId=txn.id,
                sizeBytes=sum(i.size_bytes for i in items), paths=[i.path for i in items[:PATHS_IN_PROVENANCE]],
            )  # fmt: skip

    def abort(self, txn: MediaTransaction) -> None:
        with self.storage.transaction():
            items = self._close(txn, "ABORTED")
            self.storage.execute("DELETE FROM ms_items WHERE transaction_id = ?", (txn.id,))
            self.storage.execute("DELETE FROM ms_pending_clears WHERE transaction_id = ?", (txn.id,))
        self.storage.delete_blobs(i.blob_id for i in items)

    # Items

    def check_new_item(self, ms: MediaSet, path: str | None, item_rid: str | None) -> tuple[str | None, str]:
        """An upload's (path, item rid), checked before any byte is read; a new rid when none is given."""
        if path is None and ms.paths_required:
            raise bad_request("MissingMediaItemPath", mediaSetRid=ms.rid)
        if path is not None and len(path) > MAX_PATH_CHARS:
            raise bad_request(
                "Default:InvalidArgument", mediaSetRid=ms.rid, message="mediaItemPath must be under 256 characters"
            )
        item_rid = item_rid or new_rid("mio", "media-item")
        if not ITEM_RID.match(item_rid):
            raise bad_request(
                "InvalidMediaItemRid", mediaItemRid=item_rid, reason="expected ri.mio.main.media-item.<uuid>"
            )
        if self.storage.one("SELECT 1 FROM ms_items WHERE rid = ?", (item_rid,)):
            raise conflict("MediaItemRidAlreadyExists", mediaItemRid=item_rid)
        return path, item_rid

    def upload_branch(self, ms: MediaSet, branch: str, txn_id: str | None, branch_name: str | None) -> str:
        """The branch an upload writes to: its transaction's, which an explicit `branchName` must match."""
        if txn_id is not None:
            txn = self.open_txn(ms.rid, txn_id)
            if branch_name and branch_name != txn.branch:
                raise bad_request("Default:InvalidArgument", message="the transaction is on another branch")
            return txn.branch
        if ms.transactional:
            raise bad_request(
                "Default:InvalidArgument",
                mediaSetRid=ms.rid,
                message="transactionId is required: the set is transactional",
            )
        return branch

    def add_item(
        self, principal: Principal, ms: MediaSet, branch: str, txn_id: str | None, path: str | None, item_rid: str,
        mime: str, blob: tuple[str, int],
    ) -> str:  # fmt: skip
        """Record an uploaded blob (id, size) as a new item; returns the branch's view rid."""
        blob_id, size = blob
        try:
            if size == 0:
                raise bad_request("MissingMediaItemContent", mediaSetRid=ms.rid, **({"path": path} if path else {}))
            with self.storage.transaction():
                view_rid = self.ensure_branch(ms.rid, branch)
                if txn_id is not None and self.txn(ms.rid, txn_id).status != "OPEN":  # closed while we read
                    raise bad_request("TransactionNotOpen", mediaSetRid=ms.rid, transactionId=txn_id)
                visible = txn_id is None
                self.storage.execute(
                    "INSERT INTO ms_items (rid, media_set_rid, branch, path, transaction_id, visible,"
                    " logical_timestamp, mime_type, size_bytes, blob_id, created_time)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (item_rid, ms.rid, branch, path, txn_id, visible, self._next_timestamp(ms.rid) if visible else None,
                     mime, size, blob_id, now_iso()),
                )  # fmt: skip
                self.provenance.record(
                    principal, rid=ms.rid, branch=branch, operation="uploadMediaItem", direction="write",
                    mediaItemRid=item_rid, path=path, sizeBytes=size, transactionId=txn_id, mimeType=mime,
                )  # fmt: skip
        except BaseException:
            self.storage.delete_blobs([blob_id])
            raise
        return view_rid

    def item(self, rid: str, item_rid: str) -> MediaItem:
        """A visible item: one in a transaction is not found until it commits."""
        row = self.storage.one(
            "SELECT * FROM ms_items WHERE rid = ? AND media_set_rid = ? AND visible = 1", (item_rid, rid)
        )
        if row is None:
            raise not_found("MediaItemNotFound", mediaSetRid=rid, mediaItemRid=item_rid)
        return item_from_row(row)

    def item_info(self, item: MediaItem) -> dict[str, Any]:
        view_rid = self._view_rid(item.media_set_rid, item.branch)
        assert view_rid is not None, "an item's branch always exists"
        return item.to_json(view_rid)

    def rid_by_path(self, rid: str, branch: str, path: str) -> str | None:
        """The latest visible item at `path`."""
        row = self.storage.one(
            "SELECT rid FROM ms_items WHERE media_set_rid = ? AND branch = ? AND path = ? AND visible = 1"
            " ORDER BY logical_timestamp DESC, seq DESC LIMIT 1",
            (rid, branch, path),
        )
        return None if row is None else str(row["rid"])

    def items(self, rid: str, branch: str, limit: int = 100) -> list[MediaItem]:
        """The latest visible item at each path, newest first (for people: the v2 API has no listing)."""
        rows = self.storage.query(
            "SELECT * FROM ms_items i WHERE media_set_rid = ? AND branch = ? AND visible = 1 AND NOT EXISTS ("
            " SELECT 1 FROM ms_items later WHERE later.media_set_rid = i.media_set_rid AND later.branch = i.branch"
            " AND later.path = i.path AND later.visible = 1 AND later.seq > i.seq)"
            " ORDER BY logical_timestamp DESC, seq DESC LIMIT ?",
            (rid, branch, limit),
        )
        return [item_from_row(r) for r in rows]

    def read_item(self, principal: Principal, item: MediaItem) -> Path:
        """The blob to send, with the read's provenance event."""
        self.provenance.record(
            principal, rid=item.media_set_rid, branch=item.branch, operation="readMediaItem", direction="read",
            mediaItemRid=item.rid, path=item.path, sizeBytes=item.size_bytes,
        )  # fmt: skip
        return self.storage.blob_path(item.blob_id)

    def _items_with_seq(self, txn_id: str, items: list[MediaItem]) -> list[tuple[int, MediaItem]]:
        rows = self.storage.query("SELECT rid, seq FROM ms_items WHERE transaction_id = ?", (txn_id,))
        seqs = {str(r["rid"]): int(r["seq"]) for r in rows}
        return [(seqs[i.rid], i) for i in items]

    def _hide_path(self, rid: str, branch: str, path: str) -> None:
        self.storage.execute(
            "UPDATE ms_items SET visible = 0 WHERE media_set_rid = ? AND branch = ? AND path = ? AND visible = 1",
            (rid, branch, path),
        )

    def clear(self, principal: Principal, ms: MediaSet, branch: str, txn_id: str | None, path: str) -> None:
        """Hide the items at `path` now, or (in a transaction) when it commits."""
        with self.storage.transaction():
            if txn_id is None:
                self._hide_path(ms.rid, branch, path)
            else:
                self.open_txn(ms.rid, txn_id)
                self.storage.execute(
                    "INSERT INTO ms_pending_clears (transaction_id, path, after_seq)"
                    " VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) FROM ms_items))",
                    (txn_id, path),
                )
            self.provenance.record(
                principal, rid=ms.rid, branch=branch, operation="clearMediaItemsAtPath", direction="write",
                path=path, transactionId=txn_id,
            )  # fmt: skip

    def temporary_set(self) -> MediaSet:
        """The hidden set temporary uploads go to, made on first use."""
        if self.storage.one("SELECT 1 FROM ms_sets WHERE rid = ?", (TEMPORARY_SET_RID,)) is None:
            with self.storage.transaction():
                self.storage.insert_resource(TEMPORARY_SET_RID, "media_set", "temporary media uploads", None)
                self.storage.execute(
                    "INSERT INTO ms_sets (rid, transactional, paths_required, media_schema) VALUES (?, 0, 0, ?)",
                    (TEMPORARY_SET_RID, "MULTIMODAL"),
                )
                self.ensure_branch(TEMPORARY_SET_RID, "master")
        return self.media_set(TEMPORARY_SET_RID)

    def reference(self, item: MediaItem) -> dict[str, Any]:
        """The item's media reference (core `MediaReference`, a `mediaSetViewItem`)."""
        view = {"mediaSetRid": item.media_set_rid, "mediaSetViewRid": self.item_info(item)["viewRid"],
                "mediaItemRid": item.rid}  # fmt: skip
        return {"mimeType": item.mime_type, "reference": {"type": "mediaSetViewItem", "mediaSetViewItem": view}}

    def _next_timestamp(self, rid: str) -> int:
        """Microseconds since the epoch, but strictly after every earlier write to this media set."""
        row = self.storage.one("SELECT MAX(logical_timestamp) AS t FROM ms_items WHERE media_set_rid = ?", (rid,))
        last = row["t"] if row is not None and row["t"] is not None else 0
        return max(time.time_ns() // 1000, int(last) + 1)
