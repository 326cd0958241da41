"""The media sets service's route table."""

from __future__ import annotations

from ..context import FakeContext
from ..routing import RouteTable, table
from .handlers import MediaSetHandlers
from .store import MediaSetStore

# `getRidByPath`, `clearAtPath` and `register` before `{item}`, which would match them too.
ROUTES = """
    GET     /{rid}                                      get_media_set
    POST    /{rid}/transactions                         create_transaction
    POST    /{rid}/transactions/{txn}/commit            commit
    POST    /{rid}/transactions/{txn}/abort             abort
    POST    /{rid}/items                                upload
    GET     /{rid}/items/getRidByPath                   rid_by_path
    DELETE  /{rid}/items/clearAtPath                    clear
    POST    /{rid}/items/register                       register
    GET     /{rid}/items/{item}                         info
    GET     /{rid}/items/{item}/content                 content
    GET     /{rid}/items/{item}/original                content
    GET     /{rid}/items/{item}/metadata                metadata
    GET     /{rid}/items/{item}/reference               reference
    POST    /{rid}/items/{item}/transform               transformation
    GET     /{rid}/items/{item}/transform/imagery/thumbnail/calculate  transformation
    GET     /{rid}/items/{item}/transform/imagery/thumbnail/retrieve   transformation
    GET     /{rid}/items/{item}/tiles/{z}/{x}/{y}       transformation
    GET     /{rid}/items/{item}/transformationJobs/{job}           transformation
    GET     /{rid}/items/{item}/transformationJobs/{job}/result    transformation
"""
# Before `/{rid}` routes: `media` is not a media set rid.
UPLOAD_ROUTES = """
    PUT     /media/upload                               upload_media
"""


def route_tables(ctx: FakeContext) -> list[RouteTable]:
    handlers = MediaSetHandlers(ctx, MediaSetStore(ctx.storage, ctx.provenance))
    ctx.resource_creators["media_set"] = handlers.create_for_admin
    return [
        table(("/api",), handlers, UPLOAD_ROUTES, prefix="/v2/mediasets"),
        table(("/api",), handlers, ROUTES, prefix="/v2/mediasets"),
    ]
