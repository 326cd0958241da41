"""Admin-only read views; shapes are `{"data": [...]}` lists like the SDK's pages (without paging)."""

from __future__ import annotations

from aiohttp import web

from ..context import FakeContext
from ..media_sets.store import MediaSetStore
from ..params import query_int
from .store import CatalogStore


class CatalogHandlers:
    def __init__(self, ctx: FakeContext) -> None:
        self.auth, self.store = ctx.auth, CatalogStore(ctx.storage)
        self.media = MediaSetStore(ctx.storage, ctx.provenance)

    async def resources(self, request: web.Request) -> web.Response:
        self.auth.require_admin(request)
        found = self.store.resources(request.query.get("type"))
        return web.json_response({"data": [r.to_json() for r in found]})

    async def jobs(self, request: web.Request) -> web.Response:
        self.auth.require_admin(request)
        return web.json_response({"data": self.store.jobs()})

    async def media_items(self, request: web.Request) -> web.Response:
        """The latest item at each path of a media set's branch (the v2 API itself has no listing)."""
        self.auth.require_admin(request)
        ms = self.media.media_set(request.match_info["rid"])
        branch = request.query.get("branch", "master")
        limit = min(query_int(request, "limit", 100, minimum=1), 10_000)
        items = self.media.items(ms.rid, branch, limit)
        return web.json_response(
            {"data": [{"rid": i.rid, "path": i.path, "mimeType": i.mime_type, "sizeBytes": i.size_bytes,
                       "logicalTimestamp": i.logical_timestamp} for i in items]}
        )  # fmt: skip

    async def lineage(self, request: web.Request) -> web.Response:
        self.auth.require_admin(request)
        return web.json_response(self.store.lineage())
