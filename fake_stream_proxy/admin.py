"""`/_fake/*`: set-up endpoints a real Foundry does through its UI. All need the admin token."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from .errors import ApiError, bad_request

if TYPE_CHECKING:
    from .app import FakeContext


async def _json_object(request: web.Request) -> dict[str, Any]:
    body = await request.json()
    if not isinstance(body, dict):
        raise bad_request("InvalidRequestBody", message="expected a JSON object")
    return body


def setup(app: web.Application, ctx: FakeContext) -> None:
    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def create_resource(request: web.Request) -> web.Response:
        ctx.auth.require_admin(request)
        body = await _json_object(request)
        type_ = body.get("type")
        creator = ctx.resource_creators.get(str(type_))
        if creator is None:
            raise bad_request("UnknownResourceType", type=str(type_), expected=sorted(ctx.resource_creators))
        if not isinstance(body.get("name"), str) or not body["name"]:
            raise bad_request("InvalidRequestBody", message="name is required")
        with ctx.storage.transaction():
            created = creator(ctx, body)
        return web.json_response({"type": type_, "name": body["name"], **created})

    async def create_job(request: web.Request) -> web.Response:
        ctx.auth.require_admin(request)
        body = await _json_object(request)
        inputs, outputs = body.get("inputs", {}), body.get("outputs", {})
        if not isinstance(inputs, dict) or not isinstance(outputs, dict):
            raise bad_request("InvalidJobDeclaration", message="inputs and outputs must be objects")
        return web.json_response(ctx.auth.create_job(inputs, outputs))

    async def provenance(request: web.Request) -> web.Response:
        ctx.auth.require_admin(request)
        job_rid = request.query.get("jobRid")
        result: dict[str, Any] = {"jobRid": job_rid}
        if job_rid:
            if ctx.storage.one("SELECT job_rid FROM jobs WHERE job_rid = ?", (job_rid,)) is None:
                raise ApiError(404, "JobNotFound", jobRid=job_rid)
            result.update(ctx.auth.job_resources(job_rid))
        result["events"] = ctx.provenance.events(job_rid)
        return web.json_response(result)

    app.router.add_get("/_fake/health", health)
    app.router.add_post("/_fake/resources", create_resource)
    app.router.add_post("/_fake/jobs", create_job)
    app.router.add_get("/_fake/provenance", provenance)
