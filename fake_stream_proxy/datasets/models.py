"""Dataset domain objects and the tables they live in; store.py reads and writes them.

A branch's committed history is an ordered list of transactions (`ds_history`); a branch created from a
transaction copies its parent's history up to it. Views are folded from that history on demand, so
nothing derived is stored and a restart loses nothing. File bytes live in the storage blob folder.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from ..errors import bad_request

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


def file_entry(row: sqlite3.Row) -> FileEntry:
    return FileEntry(row["path"], row["transaction_rid"], row["blob_id"], row["size_bytes"], row["updated_time"])
