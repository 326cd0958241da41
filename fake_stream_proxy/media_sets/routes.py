"""The media sets service's route table."""

from __future__ import annotations

from ..context import FakeContext
from ..routing import RouteTable, table
from .handlers import MediaSetHandlers
from .store import MediaSetStore

# `getRidByPath` before `{item}`, which would match it too.
ROUTES = """
    GET     /{rid}                                      get_media_set
    POST    /{rid}/transactions                         create_transaction
    POST    /{rid}/transactions/{txn}/commit            commit
    POST    /{rid}/transactions/{txn}/abort             abort
    POST    /{rid}/items                                upload
    GET     /{rid}/items/getRidByPath                   rid_by_path
    GET     /{rid}/items/{item}                         info
    GET     /{rid}/items/{item}/content                 content
    GET     /{rid}/items/{item}/original                content
"""


def route_tables(ctx: FakeContext) -> list[RouteTable]:
    handlers = MediaSetHandlers(ctx, MediaSetStore(ctx.storage, ctx.provenance))
    ctx.resource_creators["media_set"] = handlers.create_for_admin
    return [table(("/api",), handlers, ROUTES, prefix="/v2/mediasets")]
