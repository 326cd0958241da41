"""The Datasets API's actions on SQLite: branches, transactions, files, schemas, and how a view is resolved.

Writes land with their provenance event in one storage transaction; blobs a write orphaned are deleted
after it commits.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..auth import Principal
from ..errors import ApiError, bad_request, conflict, not_found
from ..ids import new_rid, now_iso
from ..provenance import Provenance
from ..storage import Storage
from .models import SCHEMA, TRANSACTION_TYPES, FileEntry, Txn, View, file_entry, validate_branch_name
from .tables import TablePlan

_CHUNK = 500  # SQLite host parameters per IN (...) query
_PATHS_IN_PROVENANCE = 100


class DatasetStore:
    def __init__(self, storage: Storage, provenance: Provenance) -> None:
        self.storage = storage
        self.provenance = provenance
        storage.ensure_schema(SCHEMA)

    # Datasets and branches

    def create(self, name: str, folder: str, branches: Iterable[str]) -> str:
        """A new dataset with `branches` (master among them: it exists from the start); returns its rid."""
        rid = new_rid("foundry", "dataset")
        with self.storage.transaction():
            self.storage.insert_resource(rid, "dataset", name, folder)
            for branch in dict.fromkeys(branches):
                self.storage.execute(
                    "INSERT INTO ds_branches (dataset_rid, name, created_time) VALUES (?, ?, ?)",
                    (rid, validate_branch_name(branch), now_iso()),
                )
        return rid

    def dataset(self, rid: str) -> dict[str, Any]:
        row = self.storage.one(
            "SELECT rid, name, parent_folder_rid FROM resources WHERE rid = ? AND type = 'dataset'", (rid,)
        )
        if row is None:
            raise not_found("DatasetNotFound", datasetRid=rid)
        return {"rid": row["rid"], "name": row["name"], "parentFolderRid": row["parent_folder_rid"]}

    def has_branch(self, rid: str, branch: str) -> bool:
        return (
            self.storage.one("SELECT 1 FROM ds_branches WHERE dataset_rid = ? AND name = ?", (rid, branch)) is not None
        )

    def require_branch(self, rid: str, branch: str) -> None:
        if not self.has_branch(rid, branch):
            raise not_found("BranchNotFound", datasetRid=rid, branchName=branch)

    def branch_json(self, rid: str, branch: str) -> dict[str, Any]:
        """`transactionRid` is the most recent OPEN or COMMITTED transaction on the branch (SDK model)."""
        self.require_branch(rid, branch)
        head = self.open_txn(rid, branch)
        head_rid = head.rid if head else self._history_head(rid, branch)
        return {"name": branch} if head_rid is None else {"name": branch, "transactionRid": head_rid}

    def branch_names(self, rid: str) -> list[str]:
        rows = self.storage.query("SELECT name FROM ds_branches WHERE dataset_rid = ? ORDER BY name", (rid,))
        return [r["name"] for r in rows]

    def create_branch(self, rid: str, branch: str, from_txn: str | None) -> None:
        validate_branch_name(branch)
        with self.storage.transaction():
            if self.storage.one("SELECT 1 FROM ds_branches WHERE dataset_rid = ? AND name = ?", (rid, branch)):
                raise conflict("BranchAlreadyExists", datasetRid=rid, branchName=branch)
            if from_txn is not None:
                txn = self.txn(rid, from_txn)
                if txn.status != "COMMITTED":
                    raise bad_request(
                        "TransactionNotCommitted", datasetRid=rid, transactionRid=txn.rid, transactionStatus=txn.status
                    )
                src = self.storage.one(
                    "SELECT branch, pos FROM ds_history WHERE dataset_rid = ? AND transaction_rid = ? LIMIT 1",
                    (rid, from_txn),
                )
                assert src is not None, "a committed transaction is always in its branch's history"
                self.storage.execute(
                    "INSERT INTO ds_history (dataset_rid, branch, pos, transaction_rid) SELECT dataset_rid, ?, pos,"
                    " transaction_rid FROM ds_history WHERE dataset_rid = ? AND branch = ? AND pos <= ?",
                    (branch, rid, src["branch"], src["pos"]),
                )
            self.storage.execute(
                "INSERT INTO ds_branches (dataset_rid, name, created_time) VALUES (?, ?, ?)", (rid, branch, now_iso())
            )

    def delete_branch(self, rid: str, branch: str) -> None:
        """The branch and its history go (its transactions stay in the dataset's); an open one is aborted."""
        self.require_branch(rid, branch)
        open_ = self.open_txn(rid, branch)
        if open_ is not None:
            self.abort(open_)
        with self.storage.transaction():
            self.storage.execute("DELETE FROM ds_history WHERE dataset_rid = ? AND branch = ?", (rid, branch))
            self.storage.execute("DELETE FROM ds_branches WHERE dataset_rid = ? AND name = ?", (rid, branch))

    def _history_head(self, rid: str, branch: str) -> str | None:
        row = self.storage.one(
            "SELECT transaction_rid FROM ds_history WHERE dataset_rid = ? AND branch = ? ORDER BY pos DESC LIMIT 1",
            (rid, branch),
        )
        return None if row is None else str(row["transaction_rid"])

    # Transactions

    def txn(self, rid: str, txn_rid: str) -> Txn:
        row = self.storage.one("SELECT * FROM ds_transactions WHERE rid = ? AND dataset_rid = ?", (txn_rid, rid))
        if row is None:
            raise not_found("TransactionNotFound", datasetRid=rid, transactionRid=txn_rid)
        return Txn.from_row(row)

    def open_txn(self, rid: str, branch: str) -> Txn | None:
        row = self.storage.one(
            "SELECT * FROM ds_transactions WHERE dataset_rid = ? AND branch = ? AND status = 'OPEN'", (rid, branch)
        )
        return None if row is None else Txn.from_row(row)

    def transactions(self, rid: str, branch: str | None = None) -> list[tuple[int, Txn]]:
        """(sequence, transaction), newest first as the SDK documents.

        `branch`: the branch's history, i.e. the transactions opened on it and those it was created from.
        """
        extra, params = "", [rid]
        if branch is not None:
            extra = (
                "AND (branch = ? OR rid IN"
                " (SELECT transaction_rid FROM ds_history WHERE dataset_rid = ? AND branch = ?))"
            )
            params = [rid, branch, rid, branch]
        rows = self.storage.query(
            f"SELECT rowid AS seq, * FROM ds_transactions WHERE dataset_rid = ? {extra} ORDER BY rowid DESC", params
        )
        return [(int(r["seq"]), Txn.from_row(r)) for r in rows]

    def create_txn(self, rid: str, branch: str, type_: str) -> Txn:
        if type_ not in TRANSACTION_TYPES:
            raise bad_request("Default:InvalidArgument", transactionType=type_, expected=list(TRANSACTION_TYPES))
        self.require_branch(rid, branch)
        txn = Txn(new_rid("foundry", "transaction"), rid, branch, type_, "OPEN", now_iso(), None)
        try:
            self.storage.execute(
                "INSERT INTO ds_transactions (rid, dataset_rid, branch, type, status, created_time)"
                " VALUES (?, ?, ?, ?, 'OPEN', ?)",
                (txn.rid, rid, branch, type_, txn.created_time),
            )
        except sqlite3.IntegrityError:
            raise conflict("OpenTransactionAlreadyExists", datasetRid=rid, branchName=branch) from None
        return txn

    def require_open(self, txn: Txn) -> None:
        if txn.status != "OPEN":
            raise bad_request(
                "TransactionNotOpen", datasetRid=txn.dataset_rid, transactionRid=txn.rid, transactionStatus=txn.status
            )

    def close_txn(self, rid: str, txn_rid: str, status: str) -> tuple[Txn, list[str]]:
        """OPEN -> COMMITTED | ABORTED. Returns the closed transaction and the blobs an abort orphaned.

        Call inside `storage.transaction()`; the caller deletes the orphaned blobs after it commits.
        """
        txn = self.txn(rid, txn_rid)
        self.require_open(txn)
        closed = now_iso()
        self.storage.execute(
            "UPDATE ds_transactions SET status = ?, closed_time = ? WHERE rid = ?", (status, closed, txn.rid)
        )
        orphans: list[str] = []
        if status == "COMMITTED":
            self.storage.execute(
                "INSERT INTO ds_history (dataset_rid, branch, pos, transaction_rid) VALUES (?, ?,"
                " (SELECT COALESCE(MAX(pos) + 1, 0) FROM ds_history WHERE dataset_rid = ? AND branch = ?), ?)",
                (rid, txn.branch, rid, txn.branch, txn.rid),
            )
        else:
            orphans = [f.blob_id for f in self.txn_files(txn.rid) if f.blob_id]
            self.storage.execute("DELETE FROM ds_files WHERE transaction_rid = ?", (txn.rid,))
            self.storage.execute("DELETE FROM ds_schemas WHERE transaction_rid = ?", (txn.rid,))
        return Txn(txn.rid, rid, txn.branch, txn.type, status, txn.created_time, closed), orphans

    def commit(self, principal: Principal, txn: Txn) -> Txn:
        """The commit and its provenance event land together (joining the caller's transaction, if any)."""
        with self.storage.transaction():
            closed, _ = self.close_txn(txn.dataset_rid, txn.rid, "COMMITTED")
            files = self.txn_files(txn.rid)
            self.provenance.record(
                principal, rid=txn.dataset_rid, branch=txn.branch, operation="commitTransaction", direction="write",
                record_count=len(files), transactionRid=txn.rid, transactionType=txn.type,
                sizeBytes=sum(f.size_bytes or 0 for f in files),
                paths=[f.path for f in files[:_PATHS_IN_PROVENANCE]],
            )  # fmt: skip
        return closed

    def abort(self, txn: Txn) -> Txn:
        with self.storage.transaction():
            closed, orphans = self.close_txn(txn.dataset_rid, txn.rid, "ABORTED")
        self.storage.delete_blobs(orphans)
        return closed

    def abort_quietly(self, txn: Txn) -> None:
        """Undo a transaction the fake opened for a single-call write that failed."""
        with contextlib.suppress(ApiError):  # already closed
            self.abort(txn)

    # Files

    def txn_files(self, txn_rid: str) -> list[FileEntry]:
        rows = self.storage.query("SELECT * FROM ds_files WHERE transaction_rid = ? ORDER BY path", (txn_rid,))
        return [file_entry(r) for r in rows]

    def put_file(self, txn_rid: str, path: str, blob_id: str | None, size: int | None) -> tuple[FileEntry, str | None]:
        """Record a file (or, with no blob, a deletion) in a transaction; a re-upload replaces the earlier one.

        Returns the entry and the replaced blob, which the caller deletes.
        """
        old = self.storage.one("SELECT blob_id FROM ds_files WHERE transaction_rid = ? AND path = ?", (txn_rid, path))
        entry = FileEntry(path, txn_rid, blob_id, size, now_iso())
        self.storage.execute(
            "INSERT OR REPLACE INTO ds_files (transaction_rid, path, blob_id, size_bytes, updated_time)"
            " VALUES (?, ?, ?, ?, ?)",
            (txn_rid, path, blob_id, size, entry.updated_time),
        )
        return entry, None if old is None else old["blob_id"]

    def upload(self, principal: Principal, txn: Txn, path: str, blob: tuple[str, int], auto_commit: bool) -> FileEntry:
        """Record an uploaded blob (id, size) as `path`; `auto_commit`: the fake opened `txn` for this call."""
        blob_id, size = blob
        try:
            with self.storage.transaction():
                self.require_open(self.txn(txn.dataset_rid, txn.rid))  # not closed while we read
                entry, replaced = self.put_file(txn.rid, path, blob_id, size)
                self.provenance.record(
                    principal, rid=txn.dataset_rid, branch=txn.branch, operation="uploadFile", direction="write",
                    transactionRid=txn.rid, path=path, sizeBytes=size,
                )  # fmt: skip
                if auto_commit:
                    self.commit(principal, txn)
        except BaseException:
            self.storage.delete_blobs([blob_id])
            if auto_commit:
                self.abort_quietly(txn)
            raise
        self.storage.delete_blobs([replaced])
        return entry

    def delete_file(self, principal: Principal, txn: Txn, path: str, auto_commit: bool) -> None:
        """A DELETE transaction's removal of `path`; `auto_commit` as for `upload`."""
        try:
            with self.storage.transaction():
                if auto_commit:
                    self.file_in_view(txn.dataset_rid, self.view(txn.dataset_rid, txn.branch, None, None), path)
                self.put_file(txn.rid, path, None, None)
                self.provenance.record(
                    principal, rid=txn.dataset_rid, branch=txn.branch, operation="deleteFile", direction="write",
                    transactionRid=txn.rid, path=path,
                )  # fmt: skip
                if auto_commit:
                    self.commit(principal, txn)
        except BaseException:
            if auto_commit:
                self.abort_quietly(txn)
            raise

    def file_in_view(self, rid: str, view: View, path: str) -> FileEntry:
        entry = view.files.get(path)
        if entry is None:
            if view.end_rid:
                extra = {"startTransactionRid": view.start_rid} if view.start_rid else {}
                raise not_found(
                    "FileNotFoundOnTransactionRange", datasetRid=rid, endTransactionRid=view.end_rid, path=path, **extra
                )
            raise not_found("FileNotFoundOnBranch", datasetRid=rid, branchName=view.branch, path=path)
        return entry

    def file_content(self, principal: Principal, rid: str, view: View, path: str) -> Path:
        """The blob to send, with the read's provenance event."""
        entry = self.file_in_view(rid, view, path)
        assert entry.blob_id is not None, "views never hold deletion markers"
        self.provenance.record(
            principal, rid=rid, branch=view.branch, operation="getFileContent", direction="read",
            transactionRid=entry.transaction_rid, path=path, sizeBytes=entry.size_bytes,
        )  # fmt: skip
        return self.storage.blob_path(entry.blob_id)

    def view(self, rid: str, branch: str | None, start_rid: str | None, end_rid: str | None) -> View:
        """The current view: the last SNAPSHOT plus later APPEND/UPDATE files, minus DELETEd paths.

        With `endTransactionRid` the view stops there (an open transaction may be the end, to inspect
        what it will add); with `startTransactionRid` it starts there. No branch means the end
        transaction's branch, else master.
        """
        end = self.txn(rid, end_rid) if end_rid else None
        branch = branch or (end.branch if end else "master")
        self.require_branch(rid, branch)
        rows = self.storage.query(
            "SELECT t.rid, t.type FROM ds_history h JOIN ds_transactions t ON t.rid = h.transaction_rid"
            " WHERE h.dataset_rid = ? AND h.branch = ? ORDER BY h.pos",
            (rid, branch),
        )
        history: list[tuple[str, str]] = [(r["rid"], r["type"]) for r in rows]
        if end is not None:
            rids = [h[0] for h in history]
            if end.rid in rids:
                history = history[: rids.index(end.rid) + 1]
            elif end.status == "OPEN" and end.branch == branch:
                history.append((end.rid, end.type))
            else:
                raise bad_request(
                    "TransactionNotCommitted", datasetRid=rid, transactionRid=end.rid, transactionStatus=end.status
                )
        first = 0
        if start_rid:
            self.txn(rid, start_rid)
            rids = [h[0] for h in history]
            if start_rid not in rids:
                raise bad_request(
                    "InvalidParameterCombination",
                    message="startTransactionRid is not before endTransactionRid on this branch",
                )
            first = rids.index(start_rid)
        for i in range(len(history) - 1, first - 1, -1):
            if history[i][1] == "SNAPSHOT":
                first = i
                break
        files: dict[str, FileEntry] = {}
        for txn_rid, type_ in history[first:]:
            for entry in self._files_of([txn_rid]):
                if type_ == "DELETE":
                    files.pop(entry.path, None)
                else:
                    files[entry.path] = entry
        return View(branch, start_rid, end.rid if end else None, dict(sorted(files.items())))

    def _files_of(self, txn_rids: list[str]) -> list[FileEntry]:
        out: list[FileEntry] = []
        for i in range(0, len(txn_rids), _CHUNK):
            chunk = txn_rids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            out.extend(
                file_entry(r)
                for r in self.storage.query(f"SELECT * FROM ds_files WHERE transaction_rid IN ({marks})", chunk)
            )
        return out

    # Tables

    def record_table_read(
        self, principal: Principal, rid: str, view: View, plan: TablePlan, fmt: str, columns: list[str] | None,
        row_limit: int | None, complete: bool,
    ) -> None:  # fmt: skip
        """Also for a read that broke off (`complete` false): what was sent is what was read."""
        self.provenance.record(
            principal, rid=rid, branch=view.branch, operation="readTable", direction="read",
            record_count=plan.rows, format=fmt, columns=columns, rowLimit=row_limit,
            endTransactionRid=view.end_rid or self.branch_json(rid, view.branch).get("transactionRid"),
            files=plan.files[:_PATHS_IN_PROVENANCE], complete=complete,
        )  # fmt: skip

    def history_rids(self, rid: str, branch: str, end_rid: str | None) -> list[str]:
        """Transactions a read at `end_rid` can see: committed history, or up to `end_rid` (open one allowed)."""
        rows = self.storage.query(
            "SELECT transaction_rid FROM ds_history WHERE dataset_rid = ? AND branch = ? ORDER BY pos", (rid, branch)
        )
        rids = [str(r["transaction_rid"]) for r in rows]
        if end_rid is None:
            return rids
        if end_rid in rids:
            return rids[: rids.index(end_rid) + 1]
        open_ = self.open_txn(rid, branch)
        if open_ is not None and open_.rid == end_rid:
            return [*rids, end_rid]
        raise not_found("TransactionNotFound", datasetRid=rid, transactionRid=end_rid)
