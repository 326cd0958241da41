"""Dataset schemas (putSchema, getSchema, getSchemaBatch) and readTable's view of them, over `DatasetStore`.

A schema is put on a transaction (the given end transaction, else the branch's head) and read back as the
newest one put on a transaction of the view's history.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..auth import Principal
from ..errors import ApiError, not_found
from ..ids import now_iso
from .models import View
from .store import DatasetStore
from .tables import foundry_to_arrow, is_tabular

_CHUNK = 500  # SQLite host parameters per IN (...) query


class SchemaStore:
    def __init__(self, datasets: DatasetStore) -> None:
        self.datasets = datasets
        self.storage = datasets.storage
        self.provenance = datasets.provenance

    def table_sources(self, rid: str, view: View) -> tuple[list[tuple[str, Path]], pa.Schema | None]:
        """readTable's input: the view's tabular files (path, blob), and the put schema as Arrow, if any."""
        files = [(p, self.storage.blob_path(e.blob_id)) for p, e in view.files.items() if is_tabular(p) and e.blob_id]
        stored = self.schema(rid, view.branch, self.datasets.history_rids(rid, view.branch, view.end_rid), None)
        return files, foundry_to_arrow(stored["schema"]) if stored else None

    def put_schema(
        self, principal: Principal, rid: str, branch: str, end_rid: str | None, schema: dict[str, Any], reader: str
    ) -> dict[str, Any]:
        """On `end_rid`, else the branch's head transaction; a branch without one has no view to describe."""
        self.datasets.require_branch(rid, branch)
        rids = self.datasets.history_rids(rid, branch, end_rid) if end_rid else []
        head = rids[-1] if rids else self.datasets.branch_json(rid, branch).get("transactionRid")
        if head is None:
            raise not_found("DatasetViewNotFound", datasetRid=rid, branch=branch)
        version = str(uuid.uuid4())
        with self.storage.transaction():
            self.storage.execute(
                "INSERT INTO ds_schemas (dataset_rid, branch, transaction_rid, version_id, schema_json, created_time)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (rid, branch, head, version, json.dumps(schema), now_iso()),
            )
            self.provenance.record(
                principal, rid=rid, branch=branch, operation="putSchema", direction="write",
                transactionRid=head, versionId=version, fields=len(schema["fieldSchemaList"]),
                dataframeReader=reader,
            )  # fmt: skip
        return {"branchName": branch, "endTransactionRid": head, "schema": schema, "versionId": version}

    def get_schema(self, rid: str, branch: str, end_rid: str | None, version_id: str | None) -> dict[str, Any]:
        self.datasets.require_branch(rid, branch)
        found = self.schema(rid, branch, self.datasets.history_rids(rid, branch, end_rid), version_id)
        if found is None:
            raise not_found("SchemaNotFound", datasetRid=rid, branchName=branch)
        return found

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

    def batch(self, elements: list[tuple[str, str, str | None, str | None]]) -> dict[str, Any]:
        """getSchemaBatch over (rid, branch, endTransactionRid, versionId): only the schemas that exist."""
        found: dict[str, Any] = {}
        for rid, branch, end_rid, version_id in elements:
            try:
                found[rid] = self.get_schema(rid, branch, end_rid, version_id)
            except ApiError:  # no such dataset, branch, transaction or schema: left out, as Foundry does
                continue
        return found
