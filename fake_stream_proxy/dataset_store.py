"""Dataset metadata in SQLite: branches, transactions, files, schemas, and how a view is resolved.

A branch's committed history is an ordered list of transactions (`ds_history`); a branch created from a
transaction copies its parent's history up to it. Views are folded from that history on demand, so
nothing derived is stored and a restart loses nothing. File bytes live in the storage blob folder.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .auth import now_iso
from .errors import bad_request, conflict, not_found
from .storage import Storage

SCHEMA = """
CREATE TABLE IF NOT EXISTS ds_branches (
    dataset_rid TEXT NOT NULL,
    name TEXT NOT NULL,
    created_time TEXT NOT NULL,
    PRIMARY KEY (dataset_rid, name)
);
CREATE TABLE IF NOT EXISTS ds_transactions (
    rid TEXT PRIMARY KEY,
    dataset_rid TEXT NOT NULL,
    branch TEXT NOT NULL,
    type TEXT NOT NULL,             -- APPEND | UPDATE | SNAPSHOT | DELETE
    status TEXT NOT NULL,           -- OPEN | COMMITTED | ABORTED
    created_time TEXT NOT NULL,
    closed_time TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS ds_one_open_transaction
    ON ds_transactions (dataset_rid, branch) WHERE status = 'OPEN';
CREATE TABLE IF NOT EXISTS ds_history (
    dataset_rid TEXT NOT NULL,
    branch TEXT NOT NULL,
    pos INTEGER NOT NULL,
    transaction_rid TEXT NOT NULL,
    PRIMARY KEY (dataset_rid, branch, pos)
);
CREATE INDEX IF NOT EXISTS ds_history_transaction ON ds_history (dataset_rid, transaction_rid);
CREATE TABLE IF NOT EXISTS ds_files (
    transaction_rid TEXT NOT NULL,
    path TEXT NOT NULL,
    blob_id TEXT,                   -- NULL in a DELETE transaction: the path leaves the view
    size_bytes INTEGER,
    updated_time TEXT NOT NULL,
    PRIMARY KEY (transaction_rid, path)
);
CREATE TABLE IF NOT EXISTS ds_schemas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset_rid TEXT NOT NULL,
    branch TEXT NOT NULL,
    transaction_rid TEXT NOT NULL,
    version_id TEXT NOT NULL,
    schema_json TEXT NOT NULL,
    created_time TEXT NOT NULL
);
"""

TRANSACTION_TYPES = ("APPEND", "UPDATE", "SNAPSHOT", "DELETE")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CHUNK = 500  # SQLite host parameters per IN (...) query


def validate_path(path: str) -> str:
    """Reject what could escape the dataset or make no sense as a Foundry file path."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or "\x00" in path or any(p in ("", ".", "..") for p in parts):
        raise bad_request("InvalidFilePath", filePath=path)
    return path


def validate_branch_name(name: str) -> str:
    # Foundry: branch names cannot be empty and must not look like RIDs or UUIDs.
    if not name or name.startswith("ri.") or _UUID.match(name) or len(name) > 255:
        raise bad_request("InvalidBranchName", branchName=name)
    return name


@dataclass(frozen=True)
class Txn:
    rid: str
    dataset_rid: str
    branch: str
    type: str
    status: str
    created_time: str
    closed_time: str | None

    def to_json(self) -> dict[str, Any]:
        body = {"rid": self.rid, "transactionType": self.type, "status": self.status, "createdTime": self.created_time}
        return body if self.closed_time is None else {**body, "closedTime": self.closed_time}

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Txn:
        return cls(*(row[k] for k in ("rid", "dataset_rid", "branch", "type", "status", "created_time", "closed_time")))


@dataclass(frozen=True)
class FileEntry:
    path: str
    transaction_rid: str
    blob_id: str | None
    size_bytes: int | None
    updated_time: str

    def to_json(self) -> dict[str, Any]:
        body = {"path": self.path, "transactionRid": self.transaction_rid, "sizeBytes": self.size_bytes}
        return {k: v for k, v in body.items() if v is not None} | {"updatedTime": self.updated_time}


@dataclass(frozen=True)
class View:
    """Files visible on `branch` between two transactions, keyed and sorted by path."""

    branch: str
    start_rid: str | None
    end_rid: str | None
    files: dict[str, FileEntry]


class DatasetStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        storage.ensure_schema(SCHEMA)

    # Datasets and branches

    def add_branches(self, rid: str, branches: Iterable[str]) -> None:
        """For a new dataset (after `FakeContext.insert_resource`): master exists from the start."""
        for branch in dict.fromkeys(branches):
            self.storage.execute(
                "INSERT INTO ds_branches (dataset_rid, name, created_time) VALUES (?, ?, ?)",
                (rid, validate_branch_name(branch), now_iso()),
            )

    def dataset(self, rid: str) -> dict[str, Any]:
        row = self.storage.one(
            "SELECT rid, name, parent_folder_rid FROM resources WHERE rid = ? AND type = 'dataset'", (rid,)
        )
        if row is None:
            raise not_found("DatasetNotFound", datasetRid=rid)
        return {"rid": row["rid"], "name": row["name"], "parentFolderRid": row["parent_folder_rid"]}

    def require_branch(self, rid: str, branch: str) -> None:
        if self.storage.one("SELECT 1 FROM ds_branches WHERE dataset_rid = ? AND name = ?", (rid, branch)) is None:
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

    def transactions(self, rid: str) -> list[Txn]:
        """Newest first, as the SDK documents for the dataset's transaction history."""
        rows = self.storage.query(
            "SELECT * FROM ds_transactions WHERE dataset_rid = ? ORDER BY created_time DESC, rowid DESC", (rid,)
        )
        return [Txn.from_row(r) for r in rows]

    def create_txn(self, rid: str, branch: str, type_: str) -> Txn:
        if type_ not in TRANSACTION_TYPES:
            raise bad_request("Default:InvalidArgument", transactionType=type_, expected=list(TRANSACTION_TYPES))
        self.require_branch(rid, branch)
        txn = Txn(f"ri.foundry.main.transaction.{uuid.uuid4()}", rid, branch, type_, "OPEN", now_iso(), None)
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

    # Files

    def txn_files(self, txn_rid: str) -> list[FileEntry]:
        rows = self.storage.query("SELECT * FROM ds_files WHERE transaction_rid = ? ORDER BY path", (txn_rid,))
        return [_entry(r) for r in rows]

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
                _entry(r)
                for r in self.storage.query(f"SELECT * FROM ds_files WHERE transaction_rid IN ({marks})", chunk)
            )
        return out

    # Schemas

    def put_schema(self, rid: str, branch: str, txn_rid: str, schema: dict[str, Any]) -> dict[str, Any]:
        version = str(uuid.uuid4())
        self.storage.execute(
            "INSERT INTO ds_schemas (dataset_rid, branch, transaction_rid, version_id, schema_json, created_time)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (rid, branch, txn_rid, version, json.dumps(schema), now_iso()),
        )
        return {"branchName": branch, "endTransactionRid": txn_rid, "schema": schema, "versionId": version}

    def schema(self, rid: str, branch: str, txn_rids: list[str], version_id: str | None) -> dict[str, Any] | None:
        """The newest schema put on one of `txn_rids` (the view's history), or the given version."""
        best: sqlite3.Row | None = None
        for i in range(0, len(txn_rids), _CHUNK):
            chunk = txn_rids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            extra, params = ("AND version_id = ?", [version_id]) if version_id else ("", [])
            row = self.storage.one(
                f"SELECT * FROM ds_schemas WHERE dataset_rid = ? AND transaction_rid IN ({marks}) {extra}"
                " ORDER BY id DESC LIMIT 1",
                [rid, *chunk, *params],
            )
            if row is not None and (best is None or row["id"] > best["id"]):
                best = row
        if best is None:
            return None
        return {
            "branchName": branch,
            "endTransactionRid": best["transaction_rid"],
            "schema": json.loads(best["schema_json"]),
            "versionId": best["version_id"],
        }

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


def _entry(row: sqlite3.Row) -> FileEntry:
    return FileEntry(row["path"], row["transaction_rid"], row["blob_id"], row["size_bytes"], row["updated_time"])
