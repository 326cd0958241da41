"""Admin-only read views; shapes are `{"data": [...]}` lists like the SDK's pages (without paging)."""

from __future__ import annotations

from aiohttp import web

from ..context import FakeContext
from .store import CatalogStore


class CatalogHandlers:
    def __init__(self, ctx: FakeContext) -> None:
        self.auth, self.store = ctx.auth, CatalogStore(ctx.storage)

    async def resources(self, request: web.Request) -> web.Response:
        self.auth.require_admin(request)
        found = self.store.resources(request.query.get("type"))
        return web.json_response({"data": [r.to_json() for r in found]})

    async def jobs(self, request: web.Request) -> web.Response:
        self.auth.require_admin(request)
        return web.json_response({"data": self.store.jobs()})

    async def lineage(self, request: web.Request) -> web.Response:
        self.auth.require_admin(request)
        return web.json_response(self.store.lineage())
