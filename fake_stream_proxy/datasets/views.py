"""Dataset views (the SDK's `datasets.View`): a named dataset whose rows are its backing datasets'.

A view is a dataset resource (so `Dataset.get` and the branch calls see it) with one row per branch in
`ds_views`: its backing datasets and optional primary key. The fake checks what Foundry checks when a view
is made or changed (backing datasets exist on their branch; the primary key's columns are in every backing
dataset's schema with a key type; the deletion column is a BOOLEAN), but does not resolve a view's rows:
reading a view's files or table sees an empty dataset.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ApiError, bad_request, conflict, not_found
from ..ids import new_rid, now_iso
from .models import validate_branch_name
from .schemas import SchemaStore
from .store import DatasetStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS ds_views (
    rid TEXT NOT NULL,
    branch TEXT NOT NULL,
    backing TEXT NOT NULL,          -- JSON list of ViewBackingDataset
    primary_key TEXT,               -- JSON ViewPrimaryKey, or NULL
    PRIMARY KEY (rid, branch)
);
"""

KEY_TYPES = {"BYTE", "SHORT", "DECIMAL", "INTEGER", "LONG", "STRING", "BOOLEAN", "TIMESTAMP", "DATE"}
RESOLUTIONS = {"unique", "duplicate"}


def parse_backing(raw: Any) -> list[dict[str, Any]]:
    """`backingDatasets` as the SDK sends it: `[{datasetRid, branch?, stopPropagatingMarkingIds}]`."""
    if not isinstance(raw, list):
        raise bad_request("InvalidViewBackingDataset", message="backingDatasets must be a list")
    out: list[dict[str, Any]] = []
    for entry in raw:
        rid = entry.get("datasetRid") if isinstance(entry, dict) else None
        branch = entry.get("branch") if isinstance(entry, dict) else None
        markings = entry.get("stopPropagatingMarkingIds", []) if isinstance(entry, dict) else None
        if (
            not isinstance(rid, str)
            or not (branch is None or isinstance(branch, str))
            or not isinstance(markings, list)
        ):
            raise bad_request("InvalidViewBackingDataset", message=f"not a backing dataset: {entry!r}")
        out.append({"datasetRid": rid, **({"branch": branch} if branch else {}), "stopPropagatingMarkingIds": markings})
    return out


class ViewStore:
    def __init__(self, datasets: DatasetStore, schemas: SchemaStore) -> None:
        self.datasets = datasets
        self.schemas = schemas
        self.storage = datasets.storage
        self.storage.ensure_schema(SCHEMA)

    def create(
        self, name: str, folder: str, branch: str, backing: list[dict[str, Any]], primary_key: Any
    ) -> dict[str, Any]:
        validate_branch_name(branch)
        self._check_backing(backing, branch)
        if primary_key is not None:
            self._check_primary_key(primary_key, backing, branch)
        rid = new_rid("foundry", "dataset")
        with self.storage.transaction():
            self.storage.insert_resource(rid, "dataset", name, folder)
            self.storage.execute(
                "INSERT INTO ds_branches (dataset_rid, name, created_time) VALUES (?, ?, ?)", (rid, branch, now_iso())
            )
            self.storage.execute(
                "INSERT INTO ds_views (rid, branch, backing, primary_key) VALUES (?, ?, ?, ?)",
                (rid, branch, json.dumps(backing), None if primary_key is None else json.dumps(primary_key)),
            )
        return self.view(rid, branch)

    def exists(self, rid: str, branch: str | None) -> str:
        """The view's branch (default: its only or master); 404 `ViewNotFound` when there is no such view."""
        rows = self.storage.query("SELECT branch FROM ds_views WHERE rid = ? ORDER BY branch", (rid,))
        branches = [str(r["branch"]) for r in rows]
        chosen = branch or ("master" if "master" in branches or not branches else branches[0])
        if chosen not in branches:
            raise not_found("ViewNotFound", viewDatasetRid=rid, branch=chosen)
        return chosen

    def view(self, rid: str, branch: str | None) -> dict[str, Any]:
        branch = self.exists(rid, branch)
        row = self.storage.one("SELECT * FROM ds_views WHERE rid = ? AND branch = ?", (rid, branch))
        meta = self.storage.one("SELECT name, parent_folder_rid FROM resources WHERE rid = ?", (rid,))
        assert row is not None and meta is not None, "exists() found the view"
        body = {"viewName": meta["name"], "datasetRid": rid, "parentFolderRid": meta["parent_folder_rid"],
                "branch": branch, "backingDatasets": json.loads(row["backing"])}  # fmt: skip
        return body if row["primary_key"] is None else {**body, "primaryKey": json.loads(row["primary_key"])}

    def change_backing(self, rid: str, branch: str | None, op: str, given: list[dict[str, Any]]) -> dict[str, Any]:
        """op: add | remove | replace. A removed dataset must be backing the view."""
        current = self.view(rid, branch)
        branch = current["branch"]
        backing: list[dict[str, Any]] = current["backingDatasets"]

        def key(b: dict[str, Any]) -> tuple[str, str]:
            return b["datasetRid"], b.get("branch") or branch

        if op == "remove":
            gone = {key(b) for b in given}
            missing = gone - {key(b) for b in backing}
            if missing:
                raise bad_request("InvalidViewBackingDataset", message=f"not backing the view: {sorted(missing)}")
            backing = [b for b in backing if key(b) not in gone]
        else:
            self._check_backing(given, branch)
            kept = [] if op == "replace" else backing
            backing = kept + [b for b in given if key(b) not in {key(k) for k in kept}]
        if "primaryKey" in current and backing:
            self._check_primary_key(current["primaryKey"], backing, branch)
        self.storage.execute(
            "UPDATE ds_views SET backing = ? WHERE rid = ? AND branch = ?", (json.dumps(backing), rid, branch)
        )
        return self.view(rid, branch)

    def add_primary_key(self, rid: str, branch: str | None, primary_key: Any) -> dict[str, Any]:
        current = self.view(rid, branch)
        if "primaryKey" in current:
            raise conflict("ViewPrimaryKeyCannotBeModified", viewDatasetRid=rid)
        self._check_primary_key(primary_key, current["backingDatasets"], current["branch"])
        self.storage.execute(
            "UPDATE ds_views SET primary_key = ? WHERE rid = ? AND branch = ?",
            (json.dumps(primary_key), rid, current["branch"]),
        )
        return self.view(rid, current["branch"])

    def _check_backing(self, backing: list[dict[str, Any]], branch: str) -> None:
        for b in backing:
            try:
                self.datasets.dataset(b["datasetRid"])
                self.datasets.require_branch(b["datasetRid"], b.get("branch") or branch)
            except ApiError:
                raise bad_request(
                    "InvalidViewBackingDataset", datasetRid=b["datasetRid"], branch=b.get("branch") or branch,
                    message="no such dataset or branch",
                ) from None  # fmt: skip

    def _check_primary_key(self, pk: Any, backing: list[dict[str, Any]], branch: str) -> None:
        columns = pk.get("columns") if isinstance(pk, dict) else None
        resolution = pk.get("resolution") if isinstance(pk, dict) else None
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise bad_request("Default:InvalidArgument", message="primaryKey.columns must be a list of strings")
        if not isinstance(resolution, dict) or resolution.get("type") not in RESOLUTIONS:
            raise bad_request("Default:InvalidArgument", message="primaryKey.resolution must be unique or duplicate")
        if not columns:
            raise bad_request("ViewPrimaryKeyMustContainAtLeastOneColumn")
        if not backing:
            raise bad_request("ViewPrimaryKeyRequiresBackingDatasets")
        deletion = resolution.get("deletionColumn")
        for b in backing:
            types = self._field_types(b["datasetRid"], b.get("branch") or branch)
            missing = [c for c in columns if c not in types]
            if missing:
                raise bad_request(
                    "NotAllColumnsInPrimaryKeyArePresent", primaryKeyColumns=columns, missingColumns=missing
                )
            invalid = [c for c in columns if types[c] not in KEY_TYPES]
            if invalid:
                raise bad_request("InvalidViewPrimaryKeyColumnType", primaryKeyColumns=columns, invalidColumns=invalid)
            if isinstance(deletion, str) and deletion not in types:
                raise bad_request("ViewPrimaryKeyDeletionColumnNotInDatasetSchema", deletionColumn=deletion)
            if isinstance(deletion, str) and types[deletion] != "BOOLEAN":
                raise bad_request(
                    "InvalidViewPrimaryKeyDeletionColumn", deletionColumn=deletion, deletionColumnType=types[deletion]
                )

    def _field_types(self, rid: str, branch: str) -> dict[str, str]:
        """Top-level column -> Foundry type of the schema put on the dataset's branch (none: no columns)."""
        found = self.schemas.schema(rid, branch, self.datasets.history_rids(rid, branch, None), None)
        fields = found["schema"]["fieldSchemaList"] if found else []
        return {str(f.get("name")): str(f.get("type")) for f in fields}
