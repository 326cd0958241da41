"""Datasets API v2 handlers (foundry-api.md section 3), shaped after foundry-platform-sdk's `v2/datasets`.

Where the SDK and foundry-api.md differ, the SDK wins (it is what real clients send):
- readTable's denied errorName is `ReadTableDatasetPermissionDenied`; `columns` arrives as a repeated
  query parameter (the SDK explodes lists), and we also accept comma-separated lists.
- `GET getSchema` / `PUT putSchema` (branchName, endTransactionRid in the PUT *body*).
- An upload without `transactionRid` whose caller may not write gets `CreateTransactionPermissionDenied`
  (the server would open a transaction first); with one, `UploadFilePermissionDenied`.
- Branch `transactionRid` is the most recent OPEN or COMMITTED transaction, as the SDK model documents.
- DELETE /files/{path} (the SDK's file.delete) is how a DELETE transaction removes paths.
- Listing a dataset's transactions is a preview endpoint in the SDK: it needs `preview=true`.
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

from ..auth import Access, Principal
from ..blobs import receive_blob
from ..context import FakeContext
from ..errors import ApiError, bad_request, permission_denied
from ..ids import new_rid
from ..params import json_object, listing, non_negative_int, page_params, paged, require_preview
from .models import TRANSACTION_TYPES, Txn, View, validate_path
from .store import DatasetStore
from .tables import encode, plan_table, put_schema_args, validate_schema

_log = logging.getLogger(__name__)


class DatasetHandlers:
    def __init__(self, ctx: FakeContext, store: DatasetStore) -> None:
        self.ctx = ctx
        self.store = store

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
        return self.ctx.auth.authorize(request, rid, access, branch=branch, denied=denied, datasetRid=rid, **params)

    def _read_view(self, request: web.Request, denied: str, **params: Any) -> tuple[Principal, View]:
        rid, q = request.match_info["rid"], request.query
        self._auth(request, "read", denied, **params)
        view = self.store.view(rid, q.get("branchName"), q.get("startTransactionRid"), q.get("endTransactionRid"))
        return self._auth(request, "read", denied, view.branch, **params), view

    # Datasets and branches

    async def create_dataset(self, request: web.Request) -> web.Response:
        principal = self.ctx.auth.authenticate(request)
        body = await json_object(request, optional=True)
        name, folder = body.get("name"), body.get("parentFolderRid")
        if not isinstance(name, str) or not name or not isinstance(folder, str) or not folder:
            raise bad_request("Default:InvalidArgument", message="name and parentFolderRid are required")
        if not principal.is_admin:  # job tokens are scoped to declared resources; they cannot create any
            raise permission_denied("CreateDatasetPermissionDenied", parentFolderRid=folder, name=name)
        return web.json_response(self.store.dataset(self.store.create(name, folder, ["master"])))

    async def get_dataset(self, request: web.Request) -> web.Response:
        self._auth(request, "read", "Default:PermissionDenied")
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
        self._auth(request, "read", "Default:PermissionDenied")
        names, token = paged(self.store.branch_names(rid), *page_params(request))
        return listing([self.store.branch_json(rid, n) for n in names], token)

    async def get_branch(self, request: web.Request) -> web.Response:
        rid, branch = request.match_info["rid"], request.match_info["branch"]
        self._auth(request, "read", "Default:PermissionDenied", branch)
        return web.json_response(self.store.branch_json(rid, branch))

    # Transactions

    async def create_transaction(self, request: web.Request) -> web.Response:
        rid, branch = request.match_info["rid"], request.query.get("branchName") or "master"
        body = await json_object(request, optional=True)
        self._auth(request, "write", "CreateTransactionPermissionDenied", branch, branchName=branch)
        return web.json_response(self.store.create_txn(rid, branch, str(body.get("transactionType"))).to_json())

    async def list_transactions(self, request: web.Request) -> web.Response:
        require_preview(request)
        self._auth(request, "read", "Default:PermissionDenied")
        size, token = page_params(request)
        txns = self.store.transactions(request.match_info["rid"])
        start = int(token) if token and token.isdigit() else 0
        rest = txns[start + size :]
        return listing([t.to_json() for t in txns[start : start + size]], str(start + size) if rest else None)

    def _txn(self, request: web.Request, access: Access, denied: str) -> tuple[Principal, Txn]:
        rid, txn_rid = request.match_info["rid"], request.match_info["txn"]
        self._auth(request, access, denied, transactionRid=txn_rid)
        txn = self.store.txn(rid, txn_rid)
        return self._auth(request, access, denied, txn.branch, transactionRid=txn_rid), txn

    async def get_transaction(self, request: web.Request) -> web.Response:
        return web.json_response(self._txn(request, "read", "Default:PermissionDenied")[1].to_json())

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
        _, view = self._read_view(request, "Default:PermissionDenied")
        prefix = request.query.get("pathPrefix") or ""
        paths, token = paged([p for p in view.files if p.startswith(prefix)], *page_params(request))
        return listing([view.files[p].to_json() for p in paths], token)

    async def get_file(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        _, view = self._read_view(request, "Default:PermissionDenied")
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
        files, declared = self.store.table_sources(rid, view)
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
        return web.json_response(self.store.get_schema(rid, branch, q.get("endTransactionRid"), q.get("versionId")))

    async def put_schema(self, request: web.Request) -> web.Response:
        body = await json_object(request, optional=True)
        branch, end, reader = put_schema_args(body)
        principal = self._auth(request, "write", "PutDatasetSchemaPermissionDenied", branch)
        schema = validate_schema(body.get("schema"))
        return web.json_response(
            self.store.put_schema(principal, request.match_info["rid"], branch, end, schema, reader)
        )
