"""Datasets API v2 handlers, shaped after foundry-platform-sdk's `v2/datasets`.

Where the SDK and Palantir's API docs differ, the SDK wins (it is what real clients send):
- readTable's denied errorName is `ReadTableDatasetPermissionDenied`; `columns` arrives as a repeated
  query parameter (the SDK explodes lists), and we also accept comma-separated lists.
- `GET getSchema` / `PUT putSchema` (branchName, endTransactionRid in the PUT *body*).
- An upload without `transactionRid` whose caller may not write gets `CreateTransactionPermissionDenied`
  (the server would open a transaction first); with one, `UploadFilePermissionDenied`.
- Branch `transactionRid` is the most recent OPEN or COMMITTED transaction, as the SDK model documents.
- DELETE /files/{path} (the SDK's file.delete) is how a DELETE transaction removes paths.
- Listing a dataset's transactions is a preview endpoint in the SDK: it needs `preview=true`; so is a
  branch's transaction history (`GET .../branches/{branch}/transactions`).
- Calls the SDK declares no permission error for (get dataset, branches, transactions, files) answer a
  dataset the token did not declare as 404 `DatasetNotFound`: Foundry hides what a token may not see.
- getSchemaBatch (no errors declared) leaves out datasets that are missing, unreadable or schema-less.
- Builds, jobs, schedules and health checks exist only on the platform: those calls answer the typed
  `...PermissionDenied` the SDK declares for each, after the dataset's existence (docs/fake.md).
Lenient on purpose: readTable infers the table from the view's Parquet/CSV files when no schema was put
(real Foundry needs one); once one was put, its columns and types decide the table. getSchema returns
only schemas put with putSchema.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pyarrow as pa
from aiohttp import web

from ..admin import require_unique_name
from ..auth import Access, Principal
from ..blobs import receive_blob
from ..context import FakeContext
from ..errors import ApiError, bad_request, permission_denied
from ..ids import new_rid
from ..params import (
    json_object,
    listing,
    newest_first_key,
    non_negative_int,
    optional_str,
    page_params,
    paged,
    read_json,
    require_preview,
)
from .models import TRANSACTION_TYPES, Txn, View, validate_path
from .schemas import SchemaStore
from .store import DatasetStore
from .tables import encode, plan_table, put_schema_args, validate_schema

_log = logging.getLogger(__name__)

# The errorName a read the SDK declares no permission error for answers (status 404: existence hidden).
HIDDEN = "DatasetNotFound"
PLATFORM_ONLY = "builds, jobs, schedules and health checks exist only on Foundry; the fake has none"


async def creation_request(
    ctx: FakeContext, request: web.Request, name_key: str, denied: str
) -> tuple[str, str, dict[str, Any]]:
    """(name, parentFolderRid, body) of a create call; job tokens are scoped to declared resources, so
    they cannot create any (403 `denied`)."""
    principal = ctx.auth.authenticate(request)
    body = await json_object(request, optional=True)
    name, folder = body.get(name_key), body.get("parentFolderRid")
    if not isinstance(name, str) or not name or not isinstance(folder, str) or not folder:
        raise bad_request("Default:InvalidArgument", message=f"{name_key} and parentFolderRid are required")
    if not principal.is_admin:
        raise permission_denied(denied, parentFolderRid=folder, **{name_key: name})
    return name, folder, body


class DatasetHandlers:
    def __init__(self, ctx: FakeContext, store: DatasetStore, schemas: SchemaStore) -> None:
        self.ctx = ctx
        self.store = store
        self.schemas = schemas

    def create_for_admin(self, body: dict[str, Any]) -> dict[str, Any]:
        branch = body.get("branch") or "master"
        if not isinstance(branch, str):
            raise bad_request("InvalidBranchName", branchName=str(branch))
        folder = body.get("parentFolderRid") or new_rid("compass", "folder")
        return {"rid": self.store.create(body["name"], str(folder), ("master", branch))}

    def _auth(
        self, request: web.Request, access: Access, denied: str, branch: str | None = None, **params: Any
    ) -> Principal:
        """Existence first (404 DatasetNotFound), then scope; the 403 carries the SDK's parameters."""
        rid = request.match_info["rid"]
        self.store.dataset(rid)
        status = 404 if denied == HIDDEN else 403
        return self.ctx.auth.authorize(
            request, rid, access, branch=branch, denied=denied, status=status, datasetRid=rid, **params
        )

    def _read_view(self, request: web.Request, denied: str, **params: Any) -> tuple[Principal, View]:
        rid, q = request.match_info["rid"], request.query
        self._auth(request, "read", denied, **params)
        view = self.store.view(rid, q.get("branchName"), q.get("startTransactionRid"), q.get("endTransactionRid"))
        return self._auth(request, "read", denied, view.branch, **params), view

    # Datasets and branches

    async def create_dataset(self, request: web.Request) -> web.Response:
        name, folder, _ = await creation_request(self.ctx, request, "name", "CreateDatasetPermissionDenied")
        with self.ctx.storage.transaction():
            require_unique_name(self.ctx.storage, name, folder)
            rid = self.store.create(name, folder, ["master"])
        return web.json_response(self.store.dataset(rid))

    async def get_dataset(self, request: web.Request) -> web.Response:
        self._auth(request, "read", HIDDEN)
        return web.json_response(self.store.dataset(request.match_info["rid"]))

    async def create_branch(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        body = await json_object(request, optional=True)
        name, txn = body.get("name"), body.get("transactionRid")
        if not isinstance(name, str) or (txn is not None and not isinstance(txn, str)):
            raise bad_request("Default:InvalidArgument", message="name (string) is required")
        self._auth(request, "write", "CreateBranchPermissionDenied", branchName=name)
        self.store.create_branch(rid, name, txn)
        return web.json_response(self.store.branch_json(rid, name))

    async def list_branches(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        self._auth(request, "read", HIDDEN)
        names, token = paged(self.store.branch_names(rid), *page_params(request))
        return listing([self.store.branch_json(rid, n) for n in names], token)

    async def get_branch(self, request: web.Request) -> web.Response:
        rid, branch = request.match_info["rid"], request.match_info["branch"]
        self._auth(request, "read", HIDDEN, branch)
        return web.json_response(self.store.branch_json(rid, branch))

    # Transactions

    async def create_transaction(self, request: web.Request) -> web.Response:
        rid, branch = request.match_info["rid"], request.query.get("branchName") or "master"
        body = await json_object(request, optional=True)
        self._auth(request, "write", "CreateTransactionPermissionDenied", branch, branchName=branch)
        return web.json_response(self.store.create_txn(rid, branch, str(body.get("transactionType"))).to_json())

    async def delete_branch(self, request: web.Request) -> web.Response:
        rid, branch = request.match_info["rid"], request.match_info["branch"]
        self._auth(request, "write", "DeleteBranchPermissionDenied", branch, branchName=branch)
        self.store.delete_branch(rid, branch)
        return web.Response(status=204)

    def _transactions(self, request: web.Request, branch: str | None) -> web.Response:
        txns = self.store.transactions(request.match_info["rid"], branch)
        by_key = {newest_first_key(seq): txn for seq, txn in txns}
        keys, token = paged(sorted(by_key), *page_params(request))
        return listing([by_key[k].to_json() for k in keys], token)

    async def list_transactions(self, request: web.Request) -> web.Response:
        require_preview(request)
        self._auth(request, "read", HIDDEN)
        return self._transactions(request, None)

    async def branch_transactions(self, request: web.Request) -> web.Response:
        require_preview(request)
        rid, branch = request.match_info["rid"], request.match_info["branch"]
        self._auth(request, "read", "GetBranchTransactionHistoryPermissionDenied", branch, branchName=branch)
        self.store.require_branch(rid, branch)
        return self._transactions(request, branch)

    def _txn(self, request: web.Request, access: Access, denied: str) -> tuple[Principal, Txn]:
        rid, txn_rid = request.match_info["rid"], request.match_info["txn"]
        self._auth(request, access, denied, transactionRid=txn_rid)
        txn = self.store.txn(rid, txn_rid)
        return self._auth(request, access, denied, txn.branch, transactionRid=txn_rid), txn

    async def get_transaction(self, request: web.Request) -> web.Response:
        return web.json_response(self._txn(request, "read", HIDDEN)[1].to_json())

    async def commit(self, request: web.Request) -> web.Response:
        principal, txn = self._txn(request, "write", "CommitTransactionPermissionDenied")
        return web.json_response(self.store.commit(principal, txn).to_json())

    async def abort(self, request: web.Request) -> web.Response:
        _, txn = self._txn(request, "write", "AbortTransactionPermissionDenied")
        return web.json_response(self.store.abort(txn).to_json())

    def _writable_txn(
        self, request: web.Request, denied: str, want_delete: bool, **params: Any
    ) -> tuple[Principal, Txn]:
        """The caller's open transaction, or (no transactionRid) a new one the caller must commit."""
        rid, q = request.match_info["rid"], request.query
        txn_rid = q.get("transactionRid")
        if txn_rid:
            self._auth(request, "write", denied, **params)
            txn = self.store.txn(rid, txn_rid)
            principal = self._auth(request, "write", denied, txn.branch, **params)
            self.store.require_open(txn)
        else:
            branch = q.get("branchName") or "master"
            type_ = "DELETE" if want_delete else (q.get("transactionType") or "UPDATE")
            principal = self._auth(request, "write", "CreateTransactionPermissionDenied", branch, branchName=branch)
            if type_ not in TRANSACTION_TYPES:
                raise bad_request("Default:InvalidArgument", transactionType=type_)
            txn = self.store.create_txn(rid, branch, type_)
        if (txn.type == "DELETE") != want_delete:
            raise bad_request(
                "InvalidTransactionType", datasetRid=rid, transactionRid=txn.rid, transactionType=txn.type
            )
        return principal, txn

    # Files

    async def upload(self, request: web.Request) -> web.Response:
        path = validate_path(request.match_info["path"])
        txn_rid = request.query.get("transactionRid", "")
        principal, txn = self._writable_txn(
            request, "UploadFilePermissionDenied", want_delete=False, transactionRid=txn_rid, path=path
        )
        auto = "transactionRid" not in request.query
        try:
            blob = await receive_blob(self.ctx.storage, request)
        except BaseException:
            if auto:
                self.store.abort_quietly(txn)
            raise
        return web.json_response(self.store.upload(principal, txn, path, blob, auto).to_json())

    async def delete_file(self, request: web.Request) -> web.Response:
        path = validate_path(request.match_info["path"])
        principal, txn = self._writable_txn(request, "DeleteFilePermissionDenied", want_delete=True, filePath=path)
        self.store.delete_file(principal, txn, path, "transactionRid" not in request.query)
        return web.Response(status=204)

    async def list_files(self, request: web.Request) -> web.Response:
        _, view = self._read_view(request, HIDDEN)
        prefix = request.query.get("pathPrefix") or ""
        paths, token = paged([p for p in view.files if p.startswith(prefix)], *page_params(request))
        return listing([view.files[p].to_json() for p in paths], token)

    async def get_file(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        _, view = self._read_view(request, HIDDEN)
        return web.json_response(self.store.file_in_view(request.match_info["rid"], view, path).to_json())

    async def file_content(self, request: web.Request) -> web.StreamResponse:
        rid, path = request.match_info["rid"], request.match_info["path"]
        principal, view = self._read_view(request, "GetFileContentPermissionDenied", filePath=path)
        blob = self.store.file_content(principal, rid, view, path)
        return web.FileResponse(blob, headers={"Content-Type": "application/octet-stream"})

    # Tables and schemas

    async def read_table(self, request: web.Request) -> web.StreamResponse:
        rid, q = request.match_info["rid"], request.query
        fmt = q.get("format")
        if fmt not in ("ARROW", "CSV"):
            raise bad_request("Default:InvalidArgument", format=str(fmt), message="format must be ARROW or CSV")
        columns = [c.strip() for v in q.getall("columns", []) for c in v.split(",") if c.strip()]
        row_limit = non_negative_int(request, "rowLimit")
        principal, view = self._read_view(request, "ReadTableDatasetPermissionDenied")
        files, declared = self.schemas.table_sources(rid, view)
        try:
            plan = await asyncio.to_thread(plan_table, files, columns or None, declared, rid)
        except pa.ArrowException as exc:
            raise ApiError(500, "ReadTableError", datasetRid=rid, message=str(exc)) from None
        content_type = "application/octet-stream" if fmt == "ARROW" else "text/csv"
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        await resp.prepare(request)
        chunks = encode(plan, fmt, row_limit)
        complete = False
        try:
            while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                if chunk:
                    await resp.write(chunk)
            complete = True
        except Exception:
            # Headers are gone: the only honest signal left is a broken connection, not a short 200.
            _log.exception("readTable of %s failed mid-stream", rid)
            if request.transport is not None:
                request.transport.abort()
        finally:
            chunks.close()
            self.store.record_table_read(principal, rid, view, plan, fmt, columns or None, row_limit, complete)
        if complete:
            await resp.write_eof()
        return resp

    async def get_schema(self, request: web.Request) -> web.Response:
        rid, q = request.match_info["rid"], request.query
        branch = q.get("branchName") or "master"
        self._auth(request, "read", "GetDatasetSchemaPermissionDenied", branch)
        return web.json_response(self.schemas.get_schema(rid, branch, q.get("endTransactionRid"), q.get("versionId")))

    async def put_schema(self, request: web.Request) -> web.Response:
        body = await json_object(request, optional=True)
        branch, end, reader = put_schema_args(body)
        principal = self._auth(request, "write", "PutDatasetSchemaPermissionDenied", branch)
        schema = validate_schema(body.get("schema"))
        return web.json_response(
            self.schemas.put_schema(principal, request.match_info["rid"], branch, end, schema, reader)
        )

    async def get_schema_batch(self, request: web.Request) -> web.Response:
        principal = self.ctx.auth.authenticate(request)
        body = await read_json(request)
        if not isinstance(body, list) or not all(
            isinstance(e, dict) and isinstance(e.get("datasetRid"), str) for e in body
        ):
            raise bad_request("InvalidRequestBody", message="expected a list of {datasetRid, branchName?, ...}")
        wanted = [
            (e["datasetRid"], optional_str(e, "branchName") or "master", optional_str(e, "endTransactionRid"),
             optional_str(e, "versionId"))
            for e in body
        ]  # fmt: skip
        readable = [w for w in wanted if self.ctx.auth.allows(principal, w[0], "read", w[1])]
        return web.json_response({"data": self.schemas.batch(readable)})

    # Calls that only make sense on the platform (docs/fake.md): the typed denial the SDK declares.

    def _platform_only(self, request: web.Request, denied: str, **params: Any) -> web.Response:
        self.store.dataset(request.match_info["rid"])
        self.ctx.auth.authenticate(request)
        raise permission_denied(denied, datasetRid=request.match_info["rid"], **params, message=PLATFORM_ONLY)

    async def health_check_reports(self, request: web.Request) -> web.Response:
        return self._platform_only(request, "GetDatasetHealthCheckReportsPermissionDenied")

    async def health_checks(self, request: web.Request) -> web.Response:
        return self._platform_only(request, "GetDatasetHealthChecksPermissionDenied")

    async def schedules(self, request: web.Request) -> web.Response:
        return self._platform_only(request, "GetDatasetSchedulesPermissionDenied")

    async def jobs(self, request: web.Request) -> web.Response:
        return self._platform_only(request, "GetDatasetJobsPermissionDenied")

    async def transaction_build(self, request: web.Request) -> web.Response:
        txn = request.match_info["txn"]
        self.store.txn(request.match_info["rid"], txn)
        return self._platform_only(request, "BuildTransactionPermissionDenied", transactionRid=txn)

    async def transaction_job(self, request: web.Request) -> web.Response:
        txn = request.match_info["txn"]
        self.store.txn(request.match_info["rid"], txn)
        return self._platform_only(request, "JobTransactionPermissionDenied", transactionRid=txn)
