"""What the web page shows, read from the other services' stores: the page never writes state.

Each view is a plain JSON-able dict, so the page's JSON endpoints and its HTML render the same data.
Reads here record no provenance: a person looking is not a job reading, and lineage must stay the jobs'.
"""

from __future__ import annotations

import itertools
from typing import Any

from ..catalog.store import CatalogStore
from ..context import FakeContext
from ..datasets.models import View
from ..datasets.schemas import SchemaStore
from ..datasets.store import DatasetStore
from ..datasets.tables import iter_batches, plan_table
from ..errors import ApiError, not_found
from ..streams.store import Stream, StreamStore
from ..streams.subscribers import SubscriberStore
from ..streams.summary import StreamSummaries

LATEST_RECORDS = 5  # per partition
MAX_TRANSACTIONS = 20
MAX_FILES = 50
FIRST_ROWS = 10


class UiStore:
    def __init__(self, ctx: FakeContext) -> None:
        self.catalog = CatalogStore(ctx.storage)
        streams = StreamStore(ctx.storage, ctx.provenance)
        self.streams = StreamSummaries(streams, SubscriberStore(streams))
        self.datasets = DatasetStore(ctx.storage, ctx.provenance)
        self.schemas = SchemaStore(self.datasets)

    def overview(self) -> dict[str, Any]:
        """Resources, jobs, runtimes, lineage edges and every stream's size: the page's top half."""
        lineage = self.catalog.lineage()
        names = {r["rid"]: r["name"] for r in lineage["resources"]}
        streams = [{**self.streams.overview(s), "name": names.get(s.rid, s.rid)} for s in self.streams.all()]
        return {
            "resources": lineage["resources"],
            "jobs": lineage["jobs"],
            "runtimes": self.catalog.runtimes(),
            "edges": lineage["edges"],
            "streams": streams,
        }

    def stream(self, rid: str, branch: str = "master", latest: int = LATEST_RECORDS) -> dict[str, Any]:
        found = self._stream(rid, branch)
        return {**self.streams.detail(found, latest), "name": self._name(rid)}

    def _stream(self, rid: str, branch: str) -> Stream:
        found = self.streams.streams.find(rid, branch)
        if found is None:
            raise not_found("StreamNotFound", datasetRid=rid, streamBranchName=branch)
        return found

    def dataset(self, rid: str, branch: str = "master") -> dict[str, Any]:
        """Branches, recent transactions, the branch's current files and the first rows of its table."""
        dataset = self.datasets.dataset(rid)
        view = self.datasets.view(rid, branch, None, None)
        files = list(view.files.values())
        transactions = self.datasets.transactions(rid)[:MAX_TRANSACTIONS]
        return {
            **dataset,
            "branch": branch,
            "branches": self.datasets.branch_names(rid),
            "transactions": [{**t.to_json(), "branch": t.branch} for _, t in transactions],
            "fileCount": len(files),
            "files": [
                {"path": f.path, "sizeBytes": f.size_bytes, "transactionRid": f.transaction_rid}
                for f in files[:MAX_FILES]
            ],
            "table": self._first_rows(rid, view),
        }

    def _first_rows(self, rid: str, view: View) -> dict[str, Any]:
        """Up to FIRST_ROWS rows of the view's Parquet and CSV files, or why there are none."""
        sources, declared = self.schemas.table_sources(rid, view)
        if not sources:
            return {"columns": [], "rows": [], "note": "no Parquet or CSV files in this view"}
        try:
            plan = plan_table(sources, None, declared, rid)
            batches = iter_batches(plan, FIRST_ROWS)
            rows = list(itertools.islice((row for b in batches for row in b.to_pylist()), FIRST_ROWS))
        except (ApiError, OSError, ValueError) as exc:  # pyarrow's errors are ValueErrors and OSErrors
            return {"columns": [], "rows": [], "note": f"cannot read the table: {exc}"}
        return {"columns": plan.schema.names, "rows": rows, "note": None}

    def _name(self, rid: str) -> str:
        row = self.catalog.storage.one("SELECT name FROM resources WHERE rid = ?", (rid,))
        return rid if row is None else str(row["name"])
