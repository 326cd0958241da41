"""Runtime routes (what a function-mode module calls) and Contour routes (what applications call).

Shapes follow the Foundry emulator's documentation; where it leaves status codes open we answer
`not_found` 404, `job_not_ready` 409, `job_failed` 500, `job_timeout` 504, and a bad body 400.
A reset or restart fails waiting callers at once with a clear message rather than letting them time out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from ..auth import ADMIN, bearer_token
from ..context import FakeContext
from .errors import FAILED_MESSAGE, ComputeModuleError, bad_body, job_failed, job_not_ready, job_timeout
from .hub import Hub
from .store import ComputeModuleStore, Job, JobSource

RUNTIMES = "/_emulate/foundry/compute-modules/runtimes"
_DISCONNECT_CHECK_S = 0.5  # how often a held poll looks whether its client is still there
_UNAUTHORIZED_DELAY_S = 0.5  # a module hot-looping on a bad token is slowed down, not served cheaply forever


async def _json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise bad_body("the request body is not valid JSON") from None


def _duration_ms(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() * 1000, 1)


class ComputeModuleHandlers:
    def __init__(self, ctx: FakeContext, store: ComputeModuleStore, hub: Hub) -> None:
        self.ctx = ctx
        self.store = store
        self.hub = hub
        self.options = ctx.options

    # ------------------------------------------------------------------------------------------- runtime routes

    async def create_runtime(self, request: web.Request) -> web.Response:
        body = await _json(request)
        if not isinstance(body, dict) or not isinstance(body.get("runtimeId"), str) or not body["runtimeId"]:
            raise bad_body("runtimeId (a non-empty string) is required")
        return web.json_response(self.create(body))

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create or reset a runtime from a creation body (also used by the seed config)."""
        runtime_id = str(body["runtimeId"])
        concurrency = body.get("maxConcurrentTasks", 1)
        runtime, removed = self.store.create_runtime(
            runtime_id,
            token=body.get("moduleAuthToken"),
            deployed_app_rid=body.get("deployedAppRid"),
            branch=body.get("branch"),
            display_name=body.get("displayName"),
            max_concurrent_tasks=concurrency if isinstance(concurrency, int) and concurrency > 0 else 1,
        )
        for job_id in removed:
            self.hub.finish(job_id, removed_because="the runtime was reset")
        self.hub.queued(runtime_id)  # wake long-polls holding the old token
        token_file = self._token_file(runtime_id, runtime.module_auth_token)
        base = self.ctx.https_url or self.ctx.url
        prefix = f"{base}{RUNTIMES}/{runtime_id}"
        host, _, port = base.rpartition("//")[2].partition(":")
        return {
            "runtimeId": runtime_id,
            "moduleAuthToken": runtime.module_auth_token,
            "getJobUri": f"{prefix}/job",
            "postResultUri": f"{prefix}/results",
            "postSchemaUri": f"{prefix}/schemas",
            "environment": {
                "RUNTIME_HOST": host,
                "RUNTIME_PORT": port,
                "RUNTIME_API": f"{host}:{port}",
                "GET_JOB_URI": f"{prefix}/job",
                "POST_RESULT_URI": f"{prefix}/results",
                "POST_SCHEMA_URI": f"{prefix}/schemas",
                "RESTART_NOTIFICATION_URI": f"{prefix}/restart-notification",
                "MODULE_AUTH_TOKEN": str(token_file),
                "CONNECTIONS_TO_OTHER_PODS_CA_PATH": str(self.ctx.ca_path) if self.ctx.ca_path else "",
                "MAX_CONCURRENT_TASKS": str(runtime.max_concurrent_tasks),
            },
        }

    def seed(self, config: dict[str, Any]) -> None:
        """Declare runtimes and deployed apps from the seed config; idempotent, so a restart keeps jobs and tokens.

        `{runtimes: [{runtime_id, module_auth_token?}], deployed_apps: [{deployed_app_rid, runtime_id, branch?,
        display_name?, active?}]}`; an existing runtime is reset only when the config gives it another token.
        """
        for item in config.get("runtimes") or []:
            runtime_id, token = str(item["runtime_id"]), item.get("module_auth_token")
            try:
                existing: str | None = self.store.runtime(runtime_id).module_auth_token
            except ComputeModuleError:
                existing = None
            if existing is None or (token and token != existing):
                self.create({"runtimeId": runtime_id, "moduleAuthToken": token})
            else:
                self._token_file(runtime_id, existing)
        for app in config.get("deployed_apps") or []:
            self.store.runtime(str(app["runtime_id"]))  # an app bound to an undeclared runtime is a seed error
            self.store.bind_app(
                str(app["deployed_app_rid"]),
                str(app["runtime_id"]),
                branch=app.get("branch"),
                display_name=app.get("display_name"),
                active=bool(app.get("active", True)),
            )

    def _token_file(self, runtime_id: str, token: str) -> Path:
        """The module token as Foundry mounts it: a file holding the token, no trailing newline, owner-only."""
        folder = self.ctx.storage.state_dir / "compute-modules" / runtime_id.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "module-auth-token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token)
        return path

    async def _module(self, request: web.Request) -> str:
        runtime_id = request.match_info["runtime_id"]
        try:
            self.store.authenticate(runtime_id, request.headers.get("Module-Auth-Token"))
        except ComputeModuleError as exc:
            if exc.status == 401:
                await asyncio.sleep(_UNAUTHORIZED_DELAY_S)
            raise
        return runtime_id

    async def get_job(self, request: web.Request) -> web.Response:
        """Long-poll: hold an empty poll open up to `poll_hold_s`, handing out a job the moment one is queued.

        A poll whose client went away (a module stopping) never takes a job: the job would be lost on a
        closed socket. Shutting the fake down answers every held poll at once.
        """
        runtime_id = await self._module(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.poll_hold_s
        while True:
            self.store.mark_polled(runtime_id)
            wake = self.hub.queued_event(runtime_id)
            if self.hub.closing or request.transport is None or request.transport.is_closing():
                return web.Response(status=204)
            job = self.store.take_job(runtime_id)
            if job is not None:
                return web.json_response(job.envelope())
            remaining = deadline - loop.time()
            if remaining <= 0:
                return web.Response(status=204)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), min(remaining, _DISCONNECT_CHECK_S))
            # Woken by a new job, a reset or shutdown: a reset token no longer authenticates this poll.
            self.store.authenticate(runtime_id, request.headers.get("Module-Auth-Token"))

    async def post_schemas(self, request: web.Request) -> web.Response:
        runtime_id = await self._module(request)
        body = await _json(request)
        items = body.get("functions") if isinstance(body, dict) and "functions" in body else body
        specs: dict[str, Any] = {}
        if isinstance(items, list):
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("functionName"), str):
                    raise bad_body("each schema needs a functionName")
                # Palantir's client sends whole FunctionSpecs with no `schema` key: keep the whole item.
                specs[item["functionName"]] = item
        elif isinstance(items, dict):
            specs = {str(name): {"functionName": str(name), "schema": schema} for name, schema in items.items()}
        else:
            raise bad_body("schemas must be a list, {'functions': [...]} or {name: schema}")
        self.store.put_schemas(runtime_id, specs)
        return web.json_response({"registered": sorted(specs)})

    async def post_result(self, request: web.Request) -> web.Response:
        runtime_id = await self._module(request)
        body = await request.read()  # chunked (streamed) bodies arrive whole here
        job = self.store.post_result(runtime_id, request.match_info["job_id"], body)
        self._finished(job)
        return web.Response(status=204)

    async def restart_notification(self, request: web.Request) -> web.Response:
        runtime_id = await self._module(request)
        failed = self.store.restarted(runtime_id)
        for job_id in failed:
            self._finished(self.store.job(job_id))
        return web.json_response(failed)

    async def inspect(self, request: web.Request) -> web.Response:
        runtime_id = request.match_info["runtime_id"]
        runtime = self.store.runtime(runtime_id)
        job = self.store.job(request.match_info["job_id"])
        if job.runtime_id != runtime_id:
            raise ComputeModuleError(404, "not_found", f"No compute-module job '{job.job_id}' on '{runtime_id}'.")
        return web.json_response(
            {"runtime": runtime.to_json(), "job": job.to_json(), "schemas": self.store.schemas(runtime_id)}
        )

    async def inspect_runtime(self, request: web.Request) -> web.Response:
        """Our extension: a runtime's state, schemas and job counts by status, without naming a job."""
        runtime_id = request.match_info["runtime_id"]
        runtime = self.store.runtime(runtime_id)
        return web.json_response(
            {
                "runtime": runtime.to_json(),
                "schemas": self.store.schemas(runtime_id),
                "jobs": self.store.job_counts(runtime_id),
            }
        )

    def _finished(self, job: Job) -> None:
        self.hub.finish(job.job_id)
        self.ctx.provenance.record(
            ADMIN,
            rid=job.deployed_app_rid or f"compute-module-runtime:{job.runtime_id}",
            branch=None,
            operation="computeModuleJob",
            direction="write",
            jobId=job.job_id,
            runtimeId=job.runtime_id,
            queryType=job.query_type,
            source=job.source,
            caller=job.caller,
            status=job.status,
            queuedMs=_duration_ms(job.created_time, job.started_time),
            runMs=_duration_ms(job.started_time, job.finished_time),
        )

    # ------------------------------------------------------------------------------------------- Contour routes

    def _caller(self, request: web.Request) -> str:
        token = bearer_token(request)
        if token is not None:
            if token == self.ctx.auth.admin_token:
                return "admin"
            user = self.store.user_of(token)
            if user is not None:
                return user
        raise ComputeModuleError(401, "unauthorized", "A valid bearer token is required (Authorization: Bearer ...).")

    async def _submit(self, request: web.Request, source: JobSource) -> Job:
        caller = self._caller(request)
        body = await _json(request)
        if not isinstance(body, dict):
            raise bad_body("the body must be a JSON object")
        app, query_type = body.get("deployedAppRid"), body.get("queryType")
        if not isinstance(app, str) or not app or not isinstance(query_type, str) or not query_type:
            raise bad_body("deployedAppRid and queryType are required")
        branch = body.get("deployedAppBranch")
        runtime_id = self.store.resolve_app(app, branch if isinstance(branch, str) and branch else None)
        job = self.store.submit(
            runtime_id,
            query_type,
            body.get("query", {}),
            source=source,
            deployed_app_rid=app,
            branch=branch if isinstance(branch, str) else None,
            caller=caller,
            auth_header=request.headers.get("Authorization"),
        )
        self.hub.queued(runtime_id)
        return job

    async def execute(self, request: web.Request) -> web.Response:
        job = await self._submit(request, "contour-sync")
        removed = await self.hub.wait_finished(job.job_id, self.options.sync_timeout_s)
        if removed is not None:
            raise ComputeModuleError(500, "job_failed", f"{FAILED_MESSAGE} ({removed})")
        job = self.store.job(job.job_id)
        if not job.done:
            raise job_timeout(job.job_id)
        if job.status == "failed":
            raise job_failed()
        return web.Response(body=job.result or b"", content_type="application/octet-stream")

    async def submit(self, request: web.Request) -> web.Response:
        job = await self._submit(request, "contour-async")
        handle = json.dumps(
            {"type": "v1", "jobId": job.job_id, "nodeId": None, "moduleId": None, "persistJobResult": None},
            separators=(",", ":"),
        )
        return web.json_response(
            {
                "id": job.job_id,
                "nodeId": None,
                "moduleId": None,
                "jobHandle": handle,
                "persistJobResult": None,
                "status": {"type": "queued", "queued": {"queueInfo": "NORMAL_OPERATION"}},
            }
        )

    async def status(self, request: web.Request) -> web.Response:
        self._caller(request)
        job = self.store.job(request.match_info["job_id"])
        if job.status == "queued":
            return web.json_response({"type": "queued", "queued": {"queueInfo": "NORMAL_OPERATION"}})
        if job.status == "failed":
            return web.json_response({"type": "failed", "failed": {"message": FAILED_MESSAGE}})
        timing = {"queuedTime": job.created_time, "startedTime": job.started_time, "finishedTime": job.finished_time}
        detail: dict[str, Any] = {"metadata": None, "intermediateJobInfoList": [], "multiplexerJobTiming": timing}
        return web.json_response({"type": job.status, job.status: detail})

    async def result(self, request: web.Request) -> web.Response:
        self._caller(request)
        body = await _json(request)
        job_id = body.get("id") if isinstance(body, dict) else None
        if job_id is None and isinstance(body, dict) and isinstance(body.get("jobHandle"), str):
            try:
                job_id = json.loads(body["jobHandle"]).get("jobId")
            except (ValueError, AttributeError):
                raise bad_body("jobHandle is not a job handle") from None
        if not isinstance(job_id, str):
            raise bad_body("give {id} or {jobHandle}")
        job = self.store.job(job_id)
        if job.status != "succeeded":
            raise job_not_ready(job_id)
        return web.Response(body=job.result or b"", content_type="application/octet-stream")

    async def issue_user_token(self, request: web.Request) -> web.Response:
        """Admin only: a bearer token for a named user, to call Contour as someone other than the admin."""
        self.ctx.auth.require_admin(request)
        body = await _json(request)
        user_id = body.get("userId") if isinstance(body, dict) else None
        if not isinstance(user_id, str) or not user_id:
            raise bad_body("userId is required")
        return web.json_response({"userId": user_id, "token": self.store.issue_user_token(user_id)})
