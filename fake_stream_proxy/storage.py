"""Durable state: one SQLite file plus a blob folder under the state dir.

Each service module owns its tables and registers their DDL with `ensure_schema`; this module knows
nothing of streams, datasets or media sets. WAL mode with synchronous=NORMAL survives a killed
process (the case the fake must handle: tests SIGKILL and restart it) at a fraction of FULL's cost.

The database holds job tokens, so it (and its -wal/-shm) is owner-only (0600), and a state dir or blob
folder the fake creates is 0700.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .ids import now_iso

Params = Sequence[Any] | dict[str, Any]

_CORE_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    rid TEXT PRIMARY KEY,
    type TEXT NOT NULL,             -- stream | dataset | media_set
    name TEXT NOT NULL,
    parent_folder_rid TEXT,
    created_time TEXT NOT NULL
);
"""


DB_NAME = "fake-foundry.sqlite3"


def private_dir(path: Path) -> Path:
    """`path`, created owner-only (0700) if missing; an existing folder is the user's and keeps its mode."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)  # mkdir's mode is filtered by the umask
    return path


def _private_file(path: Path) -> None:
    """Create `path` owner-only before SQLite opens it: SQLite gives its -wal and -shm the same mode."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            file.chmod(0o600)


class Storage:
    """A thin, synchronous wrapper: handlers are short, and one writer keeps SQLite simple."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = private_dir(Path(state_dir))
        self.blob_dir = private_dir(self.state_dir / "blobs")
        _private_file(self.state_dir / DB_NAME)
        self.db = sqlite3.connect(self.state_dir / DB_NAME, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._lock = threading.RLock()
        self._depth = 0
        self.ensure_schema(_CORE_SCHEMA)

    def ensure_schema(self, ddl: str) -> None:
        with self._lock:
            self.db.executescript(ddl)

    def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        with self._lock:
            return self.db.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Params]) -> sqlite3.Cursor:
        with self._lock:
            return self.db.executemany(sql, rows)

    def query(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self.db.execute(sql, params).fetchall()

    def one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self.db.execute(sql, params).fetchone()
            return row

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing: a publishRecords batch and its provenance event land together or not at all.

        Nested use joins the outer transaction.
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self.db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")
            finally:
                self._depth = 0

    # The resources table: every stream, dataset and media set, whichever service owns it.

    def insert_resource(self, rid: str, type_: str, name: str, parent_folder_rid: str | None = None) -> None:
        self.execute(
            "INSERT INTO resources (rid, type, name, parent_folder_rid, created_time) VALUES (?, ?, ?, ?, ?)",
            (rid, type_, name, parent_folder_rid, now_iso()),
        )

    def resource_type(self, rid: str) -> str | None:
        row = self.one("SELECT type FROM resources WHERE rid = ?", (rid,))
        return None if row is None else str(row["type"])

    # Blobs: file and media bytes live on disk, never in the database or in memory.

    def new_blob_path(self) -> tuple[str, Path]:
        """A fresh blob id and the path to write it at (write to a temp name, then `os.replace`)."""
        blob_id = uuid.uuid4().hex
        sub = self.blob_dir / blob_id[:2]
        sub.mkdir(exist_ok=True)
        return blob_id, sub / blob_id

    def blob_path(self, blob_id: str) -> Path:
        return self.blob_dir / blob_id[:2] / blob_id

    def write_blob(self, data: bytes) -> str:
        blob_id, path = self.new_blob_path()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return blob_id

    def delete_blobs(self, blob_ids: Iterable[str | None]) -> None:
        """Best effort: an orphaned blob wastes disk but is never referenced again."""
        for blob_id in blob_ids:
            if blob_id:
                with contextlib.suppress(OSError):
                    self.blob_path(blob_id).unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            self.db.close()
