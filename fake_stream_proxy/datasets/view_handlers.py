"""Datasets API v2 view handlers (`/v2/datasets/views`), shaped after foundry-platform-sdk's `datasets.View`.

From the SDK: a view the token did not declare is 404 `ViewNotFound` (the SDK's get declares no permission
error); changes need write access (the view declared as a job output) and answer the SDK's typed
`...PermissionDenied` with `viewDatasetRid`; creating one needs the admin token, as creating a dataset does
(403 `CreateViewPermissionDenied`). A view's name is unique in its folder like any resource's.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..admin import require_unique_name
from ..auth import Access
from ..context import FakeContext
from ..errors import not_found, permission_denied
from ..params import json_object, optional_str
from .handlers import creation_request
from .views import ViewStore, parse_backing


class ViewHandlers:
    def __init__(self, ctx: FakeContext, views: ViewStore) -> None:
        self.ctx = ctx
        self.views = views

    def _auth(self, request: web.Request, access: Access, denied: str, branch: str | None) -> str:
        """Existence first (404 ViewNotFound), then the token's scope; returns the view's branch."""
        rid = request.match_info["view"]
        branch = self.views.exists(rid, branch)
        if not self.ctx.auth.allows(self.ctx.auth.authenticate(request), rid, access, branch):
            if denied == "ViewNotFound":
                raise not_found(denied, viewDatasetRid=rid, branch=branch)
            raise permission_denied(denied, viewDatasetRid=rid)
        return branch

    async def create(self, request: web.Request) -> web.Response:
        name, folder, body = await creation_request(self.ctx, request, "viewName", "CreateViewPermissionDenied")
        backing = parse_backing(body.get("backingDatasets", []))
        with self.ctx.storage.transaction():
            require_unique_name(self.ctx.storage, name, folder)
            view = self.views.create(
                name, folder, optional_str(body, "branch") or "master", backing, body.get("primaryKey")
            )
        return web.json_response(view)

    async def get(self, request: web.Request) -> web.Response:
        branch = self._auth(request, "read", "ViewNotFound", request.query.get("branch"))
        return web.json_response(self.views.view(request.match_info["view"], branch))

    async def _change(self, request: web.Request, denied: str) -> tuple[str, str, dict[str, Any]]:
        body = await json_object(request, optional=True)
        branch = self._auth(request, "write", denied, optional_str(body, "branch"))
        return request.match_info["view"], branch, body

    async def _backing(self, request: web.Request, op: str, denied: str) -> web.Response:
        rid, branch, body = await self._change(request, denied)
        given = parse_backing(body.get("backingDatasets"))
        return web.json_response(self.views.change_backing(rid, branch, op, given))

    async def add_backing_datasets(self, request: web.Request) -> web.Response:
        return await self._backing(request, "add", "AddBackingDatasetsPermissionDenied")

    async def remove_backing_datasets(self, request: web.Request) -> web.Response:
        return await self._backing(request, "remove", "RemoveBackingDatasetsPermissionDenied")

    async def replace_backing_datasets(self, request: web.Request) -> web.Response:
        return await self._backing(request, "replace", "ReplaceBackingDatasetsPermissionDenied")

    async def add_primary_key(self, request: web.Request) -> web.Response:
        rid, branch, body = await self._change(request, "AddPrimaryKeyPermissionDenied")
        return web.json_response(self.views.add_primary_key(rid, branch, body.get("primaryKey")))
