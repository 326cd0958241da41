"""The datasets service's route tables: datasets, branches, transactions, files, schemas, and views."""

from __future__ import annotations

from ..context import FakeContext
from ..routing import RouteTable, table
from .handlers import DatasetHandlers
from .schemas import SchemaStore
from .store import DatasetStore
from .view_handlers import ViewHandlers
from .views import ViewStore

# Order matters where patterns overlap: `getSchemaBatch` and `views` before `{rid}`, `.../upload` and
# `.../content` before the bare file path.
ROUTES = """
    POST    /datasets                                   create_dataset
    POST    /datasets/getSchemaBatch                    get_schema_batch
    GET     /datasets/{rid}                             get_dataset
    POST    /datasets/{rid}/branches                    create_branch
    GET     /datasets/{rid}/branches                    list_branches
    GET     /datasets/{rid}/branches/{branch}           get_branch
    DELETE  /datasets/{rid}/branches/{branch}           delete_branch
    GET     /datasets/{rid}/branches/{branch}/transactions  branch_transactions
    POST    /datasets/{rid}/transactions                create_transaction
    GET     /datasets/{rid}/transactions                list_transactions
    GET     /datasets/{rid}/transactions/{txn}          get_transaction
    POST    /datasets/{rid}/transactions/{txn}/commit   commit
    POST    /datasets/{rid}/transactions/{txn}/abort    abort
    GET     /datasets/{rid}/transactions/{txn}/build    transaction_build
    GET     /datasets/{rid}/transactions/{txn}/job      transaction_job
    GET     /datasets/{rid}/files                       list_files
    POST    /datasets/{rid}/files/{path:.+}/upload      upload
    GET     /datasets/{rid}/files/{path:.+}/content     file_content
    GET     /datasets/{rid}/files/{path:.+}             get_file
    DELETE  /datasets/{rid}/files/{path:.+}             delete_file
    GET     /datasets/{rid}/readTable                   read_table
    GET     /datasets/{rid}/getSchema                   get_schema
    PUT     /datasets/{rid}/putSchema                   put_schema
    GET     /datasets/{rid}/getHealthCheckReports       health_check_reports
    GET     /datasets/{rid}/getHealthChecks             health_checks
    GET     /datasets/{rid}/getSchedules                schedules
    POST    /datasets/{rid}/jobs                        jobs
"""
VIEW_ROUTES = """
    POST    /views                                      create
    GET     /views/{view}                               get
    POST    /views/{view}/addBackingDatasets            add_backing_datasets
    POST    /views/{view}/removeBackingDatasets         remove_backing_datasets
    PUT     /views/{view}/replaceBackingDatasets        replace_backing_datasets
    POST    /views/{view}/addPrimaryKey                 add_primary_key
"""


def route_tables(ctx: FakeContext) -> list[RouteTable]:
    store = DatasetStore(ctx.storage, ctx.provenance)
    schemas = SchemaStore(store)
    handlers = DatasetHandlers(ctx, store, schemas)
    ctx.resource_creators["dataset"] = handlers.create_for_admin
    ctx.auth.branch_checks["dataset"] = store.has_branch
    views = ViewHandlers(ctx, ViewStore(store, schemas))
    # Views first: `/datasets/views` would otherwise be taken for a dataset rid.
    return [
        table(("/api",), views, VIEW_ROUTES, prefix="/v2/datasets"),
        table(("/api",), handlers, ROUTES, prefix="/v2"),
    ]
