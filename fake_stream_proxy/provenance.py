"""A record of every read and write a job makes, enough to draw input -> job -> output lineage.

Events are written inside the same SQLite transaction as the data they describe, so provenance
never claims a write that did not land (or misses one that did).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from .auth import Principal
from .ids import now_iso
from .storage import Storage

SCHEMA = """
CREATE TABLE IF NOT EXISTS provenance (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_rid TEXT,                   -- NULL for admin calls
    time TEXT NOT NULL,
    rid TEXT NOT NULL,
    branch TEXT,
    operation TEXT NOT NULL,
    direction TEXT NOT NULL,        -- read | write
    record_count INTEGER,
    detail TEXT NOT NULL            -- JSON: offsets by partition, file paths, transaction rids...
);
CREATE INDEX IF NOT EXISTS provenance_job ON provenance (job_rid, id);
"""


class Provenance:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        storage.ensure_schema(SCHEMA)

    def record(
        self,
        principal: Principal,
        *,
        rid: str,
        branch: str | None,
        operation: str,
        direction: Literal["read", "write"],
        record_count: int | None = None,
        **detail: Any,
    ) -> None:
        self.storage.execute(
            "INSERT INTO provenance (job_rid, time, rid, branch, operation, direction, record_count, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (principal.job_rid, now_iso(), rid, branch, operation, direction, record_count, json.dumps(detail)),
        )

    def events(self, job_rid: str | None, limit: int = 10_000) -> list[dict[str, Any]]:
        where, params = ("WHERE job_rid = ?", (job_rid, limit)) if job_rid else ("", (limit,))
        rows = self.storage.query(
            f"SELECT * FROM provenance {where} ORDER BY id LIMIT ?",
            params,
        )
        return [
            {
                "time": r["time"],
                "jobRid": r["job_rid"],
                "rid": r["rid"],
                "branch": r["branch"],
                "operation": r["operation"],
                "direction": r["direction"],
                "recordCount": r["record_count"],
                **json.loads(r["detail"]),
            }
            for r in rows
        ]
