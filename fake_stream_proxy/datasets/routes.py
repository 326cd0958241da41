"""The datasets service's route table."""

from __future__ import annotations

from ..context import FakeContext
from ..routing import RouteTable, table
from .handlers import DatasetHandlers
from .store import DatasetStore

# Order matters where patterns overlap: `.../upload` and `.../content` before the bare file path.
ROUTES = """
    POST    /datasets                                   create_dataset
    GET     /datasets/{rid}                             get_dataset
    POST    /datasets/{rid}/branches                    create_branch
    GET     /datasets/{rid}/branches                    list_branches
    GET     /datasets/{rid}/branches/{branch}           get_branch
    POST    /datasets/{rid}/transactions                create_transaction
    GET     /datasets/{rid}/transactions                list_transactions
    GET     /datasets/{rid}/transactions/{txn}          get_transaction
    POST    /datasets/{rid}/transactions/{txn}/commit   commit
    POST    /datasets/{rid}/transactions/{txn}/abort    abort
    GET     /datasets/{rid}/files                       list_files
    POST    /datasets/{rid}/files/{path:.+}/upload      upload
    GET     /datasets/{rid}/files/{path:.+}/content     file_content
    GET     /datasets/{rid}/files/{path:.+}             get_file
    DELETE  /datasets/{rid}/files/{path:.+}             delete_file
    GET     /datasets/{rid}/readTable                   read_table
    GET     /datasets/{rid}/getSchema                   get_schema
    PUT     /datasets/{rid}/putSchema                   put_schema
"""


def route_tables(ctx: FakeContext) -> list[RouteTable]:
    handlers = DatasetHandlers(ctx, DatasetStore(ctx.storage, ctx.provenance))
    ctx.resource_creators["dataset"] = handlers.create_for_admin
    return [table(("/api",), handlers, ROUTES, prefix="/v2")]
