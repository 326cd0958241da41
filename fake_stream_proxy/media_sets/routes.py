"""The media sets service's route table."""

from __future__ import annotations

from ..context import FakeContext
from ..routing import RouteTable
from .handlers import MediaSetHandlers
from .store import MediaSetStore

MEDIA_SET = "/v2/mediasets/{rid}"


def route_tables(ctx: FakeContext) -> list[RouteTable]:
    h = MediaSetHandlers(ctx, MediaSetStore(ctx.storage, ctx.provenance))
    ctx.resource_creators["media_set"] = h.create_for_admin
    return [
        RouteTable(
            ("/api",),
            [
                ("GET", MEDIA_SET, h.get_media_set),
                ("POST", MEDIA_SET + "/transactions", h.create_transaction),
                ("POST", MEDIA_SET + "/transactions/{txn}/commit", h.commit),
                ("POST", MEDIA_SET + "/transactions/{txn}/abort", h.abort),
                ("POST", MEDIA_SET + "/items", h.upload),
                ("GET", MEDIA_SET + "/items/getRidByPath", h.rid_by_path),
                ("GET", MEDIA_SET + "/items/{item}", h.info),
                ("GET", MEDIA_SET + "/items/{item}/content", h.content),
                ("GET", MEDIA_SET + "/items/{item}/original", h.content),
            ],
        )
    ]
