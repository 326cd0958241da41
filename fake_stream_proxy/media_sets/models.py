"""Media set domain objects and the tables they live in; store.py reads and writes them."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS ms_sets (
    rid TEXT PRIMARY KEY,
    transactional INTEGER NOT NULL,
    paths_required INTEGER NOT NULL,
    media_schema TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ms_branches (
    media_set_rid TEXT NOT NULL,
    name TEXT NOT NULL,
    view_rid TEXT NOT NULL UNIQUE,
    PRIMARY KEY (media_set_rid, name)
);
CREATE TABLE IF NOT EXISTS ms_transactions (
    id TEXT PRIMARY KEY,
    media_set_rid TEXT NOT NULL,
    branch TEXT NOT NULL,
    status TEXT NOT NULL,           -- OPEN | COMMITTED | ABORTED
    created_time TEXT NOT NULL,
    closed_time TEXT
);
CREATE TABLE IF NOT EXISTS ms_items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rid TEXT NOT NULL UNIQUE,
    media_set_rid TEXT NOT NULL,
    branch TEXT NOT NULL,
    path TEXT,
    transaction_id TEXT,            -- NULL: written outside a transaction
    visible INTEGER NOT NULL,       -- 0 until its transaction commits
    logical_timestamp INTEGER,      -- microseconds, strictly increasing per media set; set when visible
    mime_type TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    blob_id TEXT NOT NULL,
    created_time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ms_pending_clears (
    transaction_id TEXT NOT NULL,
    path TEXT NOT NULL,
    after_seq INTEGER NOT NULL      -- clears items up to this upload when its transaction commits
);
CREATE UNIQUE INDEX IF NOT EXISTS ms_one_open_transaction
    ON ms_transactions (media_set_rid, branch) WHERE status = 'OPEN';
CREATE INDEX IF NOT EXISTS ms_items_by_path ON ms_items (media_set_rid, branch, path, visible, logical_timestamp);
CREATE INDEX IF NOT EXISTS ms_items_by_time ON ms_items (media_set_rid, logical_timestamp);
CREATE INDEX IF NOT EXISTS ms_items_by_transaction ON ms_items (transaction_id);
"""

MAX_PATH_CHARS = 255  # Foundry: paths must be less than 256 characters
ITEM_RID = re.compile(
    r"^ri\.mio\.main\.media-item\.[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
TWO_GIB = 2**31
PATHS_IN_PROVENANCE = 100
TEMPORARY_SET_RID = "ri.mio.main.media-set.00000000-0000-4000-8000-000000000001"


@dataclass(frozen=True)
class MediaSet:
    rid: str
    transactional: bool
    paths_required: bool
    media_schema: str

    def to_json(self) -> dict[str, Any]:
        policy = "batchTransactions" if self.transactional else "noTransactions"
        return {"rid": self.rid, "mediaSchema": self.media_schema, "defaultBranchName": "master",
                "transactionPolicy": {"type": policy}, "pathsRequired": self.paths_required}  # fmt: skip


@dataclass(frozen=True)
class MediaTransaction:
    id: str
    media_set_rid: str
    branch: str
    status: str


@dataclass(frozen=True)
class MediaItem:
    rid: str
    media_set_rid: str
    branch: str
    path: str | None
    logical_timestamp: int | None
    mime_type: str
    size_bytes: int
    blob_id: str

    def to_json(self, view_rid: str) -> dict[str, Any]:
        """The SDK's item info: `sizeBytesLong` is required by its model, besides `sizeBytes`."""
        body: dict[str, Any] = {"viewRid": view_rid, "logicalTimestamp": self.logical_timestamp}
        if self.path is not None:
            body["path"] = self.path
        body["mimeType"] = body["originallyUploadedFileMimeType"] = self.mime_type
        if self.size_bytes < TWO_GIB:  # the SDK documents sizeBytes as omitted from 2 GiB
            body["sizeBytes"] = self.size_bytes
        body["sizeBytesLong"] = self.size_bytes
        return body

    def metadata(self) -> dict[str, Any]:
        """The SDK's `MediaItemMetadata`: PDFs are documents, anything else untyped (the fake decodes nothing)."""
        sizes = {"sizeBytes": min(self.size_bytes, TWO_GIB - 1), "sizeBytesLong": self.size_bytes}
        if self.mime_type == "application/pdf":
            return {"type": "document", "format": "PDF", **sizes}
        return {"type": "untyped", **sizes}


def item_from_row(row: sqlite3.Row) -> MediaItem:
    return MediaItem(*(row[k] for k in ("rid", "media_set_rid", "branch", "path", "logical_timestamp",
                                        "mime_type", "size_bytes", "blob_id")))  # fmt: skip
