"""Stream records on disk: per view and partition, a log of chunks, each a run of consecutive offsets.

One row per published batch and partition (split at CHUNK_RECORDS / CHUNK_BYTES) instead of one per record:
a row per record cost an index entry carrying the 67-character view rid each time (110 MB per million small
records) and a B-tree insert per record (most of publish's time on this machine's disk). A chunk holds its
records' stored JSON separated by newlines, which encoded JSON never contains, and rows carry a small
integer view id. Reads and writes by offset are unchanged: a read takes the chunks overlapping its range.
"""

from __future__ import annotations

from ..storage import Storage
from .wire import Records

SCHEMA = """
CREATE TABLE IF NOT EXISTS stream_views (
    view_id INTEGER PRIMARY KEY,    -- what stream_chunks rows carry instead of the view rid
    view_rid TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS stream_chunks (
    view_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    first_offset INTEGER NOT NULL,
    record_count INTEGER NOT NULL,
    records BLOB NOT NULL           -- record_count records' JSON, newline-separated; binary fields are base64
);
-- Not WITHOUT ROWID: that would copy whole chunks into the tree's interior pages.
CREATE UNIQUE INDEX IF NOT EXISTS stream_chunks_by_offset
    ON stream_chunks (view_id, partition, first_offset, record_count);
"""

# A read of one page (1000 records) touches at most two chunks; no chunk nears SQLite's 1 GB value limit.
CHUNK_RECORDS = 1000
CHUNK_BYTES = 4 * 1024 * 1024
SEPARATOR = b"\n"


def _chunks(values: list[bytes]) -> list[tuple[int, int]]:
    """(start, stop) index ranges of `values`, each within CHUNK_RECORDS and (past one record) CHUNK_BYTES."""
    if len(values) <= CHUNK_RECORDS and sum(map(len, values)) + len(values) <= CHUNK_BYTES:
        return [(0, len(values))]
    ranges: list[tuple[int, int]] = []
    start, size = 0, 0
    for index, value in enumerate(values):
        if index > start and (index - start >= CHUNK_RECORDS or size + len(value) + 1 > CHUNK_BYTES):
            ranges.append((start, index))
            start, size = index, 0
        size += len(value) + 1
    ranges.append((start, len(values)))
    return ranges


class RecordLog:
    """Callers hold the transaction: an append lands with its provenance event and partition cursor."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        storage.ensure_schema(SCHEMA)

    def new_view(self, view_rid: str) -> int:
        cursor = self.storage.execute("INSERT INTO stream_views (view_rid) VALUES (?)", (view_rid,))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def drop_view(self, view_id: int) -> None:
        self.storage.execute("DELETE FROM stream_chunks WHERE view_id = ?", (view_id,))

    def end_offset(self, view_id: int, partition: int) -> int:
        """The next offset `partition` will write; from the index, in O(log n)."""
        row = self.storage.one(
            "SELECT first_offset + record_count AS next FROM stream_chunks WHERE view_id = ? AND partition = ?"
            " ORDER BY first_offset DESC LIMIT 1",
            (view_id, partition),
        )
        return 0 if row is None else int(row["next"])

    def append(self, view_id: int, partition: int, first_offset: int, values: list[bytes]) -> None:
        """`values` (encoded records) at `first_offset` on; the caller got it from `end_offset`."""
        self.storage.executemany(
            "INSERT INTO stream_chunks (view_id, partition, first_offset, record_count, records)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (view_id, partition, first_offset + start, stop - start, SEPARATOR.join(values[start:stop]))
                for start, stop in _chunks(values)
            ],
        )

    def read(self, view_id: int, partition: int, start: int, limit: int) -> Records:
        """Up to `limit` (offset, stored JSON) from `start` on, oldest first."""
        rows = self.storage.query(
            "SELECT first_offset, records FROM stream_chunks WHERE view_id = ?1 AND partition = ?2"
            " AND first_offset < ?3 + ?4 AND first_offset >= (SELECT IFNULL(MAX(first_offset), 0)"
            " FROM stream_chunks WHERE view_id = ?1 AND partition = ?2 AND first_offset <= ?3)"
            " ORDER BY first_offset",
            (view_id, partition, start, limit),
        )
        result: Records = []
        for row in rows:
            first = int(row["first_offset"])
            values = bytes(row["records"]).split(SEPARATOR)
            skip = max(0, start - first)
            take = values[skip : skip + limit - len(result)]
            result += zip(range(first + skip, first + skip + len(take)), take, strict=True)
        return result
