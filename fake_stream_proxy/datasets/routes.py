"""The datasets service's route table."""

from __future__ import annotations

from ..context import FakeContext
from ..routing import RouteTable
from .handlers import DatasetHandlers
from .store import DatasetStore

DATASET = "/v2/datasets/{rid}"


def route_tables(ctx: FakeContext) -> list[RouteTable]:
    h = DatasetHandlers(ctx, DatasetStore(ctx.storage, ctx.provenance))
    ctx.resource_creators["dataset"] = h.create_for_admin
    return [
        RouteTable(
            ("/api",),
            [
                ("POST", "/v2/datasets", h.create_dataset),
                ("GET", DATASET, h.get_dataset),
                ("POST", DATASET + "/branches", h.create_branch),
                ("GET", DATASET + "/branches", h.list_branches),
                ("GET", DATASET + "/branches/{branch}", h.get_branch),
                ("POST", DATASET + "/transactions", h.create_transaction),
                ("GET", DATASET + "/transactions", h.list_transactions),
                ("GET", DATASET + "/transactions/{txn}", h.get_transaction),
                ("POST", DATASET + "/transactions/{txn}/commit", h.commit),
                ("POST", DATASET + "/transactions/{txn}/abort", h.abort),
                ("GET", DATASET + "/files", h.list_files),
                ("POST", DATASET + "/files/{path:.+}/upload", h.upload),
                ("GET", DATASET + "/files/{path:.+}/content", h.file_content),
                ("GET", DATASET + "/files/{path:.+}", h.get_file),
                ("DELETE", DATASET + "/files/{path:.+}", h.delete_file),
                ("GET", DATASET + "/readTable", h.read_table),
                ("GET", DATASET + "/getSchema", h.get_schema),
                ("PUT", DATASET + "/putSchema", h.put_schema),
            ],
        )
    ]
