"""`/_fake/*`: set-up endpoints a real Foundry does through its UI. All need the admin token."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .context import FakeContext
from .errors import ApiError, bad_request, conflict
from .params import json_object
from .routing import RouteTable, table
from .storage import Storage

ROUTES = """
    GET     /health                                     health
    POST    /resources                                  create_resource
    POST    /jobs                                       create_job
    GET     /provenance                                 provenance
"""


def require_unique_name(storage: Storage, name: str, folder: str | None) -> None:
    """Names are unique per folder, whatever the resource type (409 `ResourceNameAlreadyExists`)."""
    if folder and storage.one("SELECT 1 FROM resources WHERE parent_folder_rid = ? AND name = ?", (folder, name)):
        raise conflict("ResourceNameAlreadyExists", parentFolderRid=folder, displayName=name)


class AdminHandlers:
    def __init__(self, ctx: FakeContext) -> None:
        self.ctx = ctx

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def create_resource(self, request: web.Request) -> web.Response:
        """Each service registers a creator for its resource type in `ctx.resource_creators`."""
        self.ctx.auth.require_admin(request)
        body = await json_object(request)
        type_ = body.get("type")
        creator = self.ctx.resource_creators.get(str(type_))
        if creator is None:
            raise bad_request("UnknownResourceType", type=str(type_), expected=sorted(self.ctx.resource_creators))
        if not isinstance(body.get("name"), str) or not body["name"]:
            raise bad_request("InvalidRequestBody", message="name is required")
        folder = body.get("parentFolderRid")
        with self.ctx.storage.transaction():
            require_unique_name(self.ctx.storage, body["name"], folder if isinstance(folder, str) else None)
            created = creator(body)
        return web.json_response({"type": type_, "name": body["name"], **created})

    async def create_job(self, request: web.Request) -> web.Response:
        self.ctx.auth.require_admin(request)
        body = await json_object(request)
        inputs, outputs = body.get("inputs", {}), body.get("outputs", {})
        if not isinstance(inputs, dict) or not isinstance(outputs, dict):
            raise bad_request("InvalidJobDeclaration", message="inputs and outputs must be objects")
        return web.json_response(self.ctx.auth.create_job(inputs, outputs))

    async def provenance(self, request: web.Request) -> web.Response:
        self.ctx.auth.require_admin(request)
        job_rid = request.query.get("jobRid")
        result: dict[str, Any] = {"jobRid": job_rid}
        if job_rid:
            if self.ctx.storage.one("SELECT job_rid FROM jobs WHERE job_rid = ?", (job_rid,)) is None:
                raise ApiError(404, "JobNotFound", jobRid=job_rid)
            result.update(self.ctx.auth.job_resources(job_rid))
        result["events"] = self.ctx.provenance.events(job_rid)
        return web.json_response(result)


def route_tables(ctx: FakeContext) -> list[RouteTable]:
    return [table(("/_fake",), AdminHandlers(ctx), ROUTES)]
