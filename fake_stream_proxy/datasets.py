"""Datasets API v2 (foundry-api.md section 3), shaped after foundry-platform-sdk's `v2/datasets`.

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
import uuid
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from aiohttp import web

from .api_params import json_object, listing, non_negative_int, page_params, paged, require_preview
from .auth import Access, Principal
from .blob_io import delete_blobs, receive_blob
from .dataset_store import TRANSACTION_TYPES, DatasetStore, FileEntry, Txn, View, validate_path
from .dataset_tables import encode, foundry_to_arrow, is_tabular, plan_table, put_schema_args, validate_schema
from .errors import ApiError, bad_request, not_found, permission_denied

if TYPE_CHECKING:
    from .app import FakeContext

_log = logging.getLogger(__name__)

BASE = "/api/v2/datasets"
_PATHS_IN_PROVENANCE = 100


def setup(app: web.Application, ctx: FakeContext) -> None:
    store = DatasetStore(ctx.storage)

    def create_for_admin(_: FakeContext, body: dict[str, Any]) -> dict[str, Any]:
        branch = body.get("branch") or "master"
        if not isinstance(branch, str):
            raise bad_request("InvalidBranchName", branchName=str(branch))
        folder = body.get("parentFolderRid") or f"ri.compass.main.folder.{uuid.uuid4()}"
        rid = f"ri.foundry.main.dataset.{uuid.uuid4()}"
        ctx.insert_resource(rid, "dataset", body["name"], str(folder))
        store.add_branches(rid, ("master", branch))
        return {"rid": rid}

    ctx.resource_creators["dataset"] = create_for_admin
    h = _Handlers(ctx, store)
    r = app.router
    r.add_post(BASE, h.create_dataset)
    r.add_get(BASE + "/{rid}", h.get_dataset)
    r.add_post(BASE + "/{rid}/branches", h.create_branch)
    r.add_get(BASE + "/{rid}/branches", h.list_branches)
    r.add_get(BASE + "/{rid}/branches/{branch}", h.get_branch)
    r.add_post(BASE + "/{rid}/transactions", h.create_transaction)
    r.add_get(BASE + "/{rid}/transactions", h.list_transactions)
    r.add_get(BASE + "/{rid}/transactions/{txn}", h.get_transaction)
    r.add_post(BASE + "/{rid}/transactions/{txn}/commit", h.commit)
    r.add_post(BASE + "/{rid}/transactions/{txn}/abort", h.abort)
    r.add_get(BASE + "/{rid}/files", h.list_files)
    r.add_post(BASE + "/{rid}/files/{path:.+}/upload", h.upload)
    r.add_get(BASE + "/{rid}/files/{path:.+}/content", h.file_content)
    r.add_get(BASE + "/{rid}/files/{path:.+}", h.get_file)
    r.add_delete(BASE + "/{rid}/files/{path:.+}", h.delete_file)
    r.add_get(BASE + "/{rid}/readTable", h.read_table)
    r.add_get(BASE + "/{rid}/getSchema", h.get_schema)
    r.add_put(BASE + "/{rid}/putSchema", h.put_schema)


class _Handlers:
    def __init__(self, ctx: FakeContext, store: DatasetStore) -> None:
        self.ctx = ctx
        self.store = store

    def _auth(
        self, request: web.Request, access: Access, denied: str, branch: str | None = None, **params: Any
    ) -> Principal:
        """Existence first (404 DatasetNotFound), then scope; the 403 carries the SDK's parameters."""
        rid = request.match_info["rid"]
        self.store.dataset(rid)
        try:
            return self.ctx.auth.authorize(request, rid, access, denied, branch)
        except ApiError as exc:
            if exc.status == 403:
                raise permission_denied(denied, datasetRid=rid, **params) from None
            raise

    def _read_view(self, request: web.Request, denied: str, **params: Any) -> tuple[Principal, View]:
        rid, q = request.match_info["rid"], request.query
        self._auth(request, "read", denied, **params)
        view = self.store.view(rid, q.get("branchName"), q.get("startTransactionRid"), q.get("endTransactionRid"))
        return self._auth(request, "read", denied, view.branch, **params), view

    def _file_in_view(self, request: web.Request, view: View, path: str) -> FileEntry:
        entry = view.files.get(path)
        if entry is None:
            rid = request.match_info["rid"]
            if view.end_rid:
                extra = {"startTransactionRid": view.start_rid} if view.start_rid else {}
                raise not_found(
                    "FileNotFoundOnTransactionRange", datasetRid=rid, endTransactionRid=view.end_rid, path=path, **extra
                )
            raise not_found("FileNotFoundOnBranch", datasetRid=rid, branchName=view.branch, path=path)
        return entry

    # Datasets and branches

    async def create_dataset(self, request: web.Request) -> web.Response:
        principal = self.ctx.auth.authenticate(request)
        body = await json_object(request)
        name, folder = body.get("name"), body.get("parentFolderRid")
        if not isinstance(name, str) or not name or not isinstance(folder, str) or not folder:
            raise bad_request("Default:InvalidArgument", message="name and parentFolderRid are required")
        if not principal.is_admin:  # job tokens are scoped to declared resources; they cannot create any
            raise permission_denied("CreateDatasetPermissionDenied", parentFolderRid=folder, name=name)
        rid = f"ri.foundry.main.dataset.{uuid.uuid4()}"
        with self.ctx.storage.transaction():
            self.ctx.insert_resource(rid, "dataset", name, folder)
            self.store.add_branches(rid, ["master"])
        return web.json_response(self.store.dataset(rid))

    async def get_dataset(self, request: web.Request) -> web.Response:
        self._auth(request, "read", "Default:PermissionDenied")
        return web.json_response(self.store.dataset(request.match_info["rid"]))

    async def create_branch(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        body = await json_object(request)
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
        body = await json_object(request)
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
        with self.ctx.storage.transaction():
            closed = self._commit(principal, txn)
        return web.json_response(closed.to_json())

    def _commit(self, principal: Principal, txn: Txn) -> Txn:
        """Inside a storage transaction, so the commit and its provenance event land together."""
        closed, _ = self.store.close_txn(txn.dataset_rid, txn.rid, "COMMITTED")
        files = self.store.txn_files(txn.rid)
        self.ctx.provenance.record(
            principal, rid=txn.dataset_rid, branch=txn.branch, operation="commitTransaction", direction="write",
            record_count=len(files), transactionRid=txn.rid, transactionType=txn.type,
            sizeBytes=sum(f.size_bytes or 0 for f in files), paths=[f.path for f in files[:_PATHS_IN_PROVENANCE]],
        )  # fmt: skip
        return closed

    async def abort(self, request: web.Request) -> web.Response:
        _, txn = self._txn(request, "write", "AbortTransactionPermissionDenied")
        with self.ctx.storage.transaction():
            closed, orphans = self.store.close_txn(txn.dataset_rid, txn.rid, "ABORTED")
        delete_blobs(self.ctx.storage, orphans)
        return web.json_response(closed.to_json())

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
        blob_id: str | None = None
        try:
            blob_id, size = await receive_blob(self.ctx.storage, request)
            with self.ctx.storage.transaction():
                self.store.require_open(self.store.txn(txn.dataset_rid, txn.rid))  # not closed while we read
                entry, replaced = self.store.put_file(txn.rid, path, blob_id, size)
                self.ctx.provenance.record(
                    principal, rid=txn.dataset_rid, branch=txn.branch, operation="uploadFile", direction="write",
                    transactionRid=txn.rid, path=path, sizeBytes=size,
                )  # fmt: skip
                if auto:
                    self._commit(principal, txn)
        except BaseException:
            delete_blobs(self.ctx.storage, [blob_id])
            if auto:
                self._abort_quietly(txn)
            raise
        delete_blobs(self.ctx.storage, [replaced])
        return web.json_response(entry.to_json())

    def _abort_quietly(self, txn: Txn) -> None:
        try:
            with self.ctx.storage.transaction():
                _, orphans = self.store.close_txn(txn.dataset_rid, txn.rid, "ABORTED")
            delete_blobs(self.ctx.storage, orphans)
        except ApiError:
            pass  # already closed

    async def delete_file(self, request: web.Request) -> web.Response:
        path = validate_path(request.match_info["path"])
        principal, txn = self._writable_txn(request, "DeleteFilePermissionDenied", want_delete=True, filePath=path)
        auto = "transactionRid" not in request.query
        try:
            with self.ctx.storage.transaction():
                if auto:
                    self._file_in_view(request, self.store.view(txn.dataset_rid, txn.branch, None, None), path)
                self.store.put_file(txn.rid, path, None, None)
                self.ctx.provenance.record(
                    principal, rid=txn.dataset_rid, branch=txn.branch, operation="deleteFile", direction="write",
                    transactionRid=txn.rid, path=path,
                )  # fmt: skip
                if auto:
                    self._commit(principal, txn)
        except BaseException:
            if auto:
                self._abort_quietly(txn)
            raise
        return web.Response(status=204)

    async def list_files(self, request: web.Request) -> web.Response:
        _, view = self._read_view(request, "Default:PermissionDenied")
        prefix = request.query.get("pathPrefix") or ""
        paths, token = paged([p for p in view.files if p.startswith(prefix)], *page_params(request))
        return listing([view.files[p].to_json() for p in paths], token)

    async def get_file(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        _, view = self._read_view(request, "Default:PermissionDenied")
        return web.json_response(self._file_in_view(request, view, path).to_json())

    async def file_content(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        principal, view = self._read_view(request, "GetFileContentPermissionDenied", filePath=path)
        entry = self._file_in_view(request, view, path)
        assert entry.blob_id is not None, "views never hold deletion markers"
        self.ctx.provenance.record(
            principal, rid=request.match_info["rid"], branch=view.branch, operation="getFileContent",
            direction="read", transactionRid=entry.transaction_rid, path=path, sizeBytes=entry.size_bytes,
        )  # fmt: skip
        blob = self.ctx.storage.blob_path(entry.blob_id)
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
        files = [
            (p, self.ctx.storage.blob_path(e.blob_id)) for p, e in view.files.items() if is_tabular(p) and e.blob_id
        ]
        stored = self.store.schema(rid, view.branch, self.store.history_rids(rid, view.branch, view.end_rid), None)
        declared = foundry_to_arrow(stored["schema"]) if stored else None
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
            self.ctx.provenance.record(
                principal, rid=rid, branch=view.branch, operation="readTable", direction="read",
                record_count=plan.rows, format=fmt, columns=columns or None, rowLimit=row_limit,
                endTransactionRid=view.end_rid or self.store.branch_json(rid, view.branch).get("transactionRid"),
                files=plan.files[:_PATHS_IN_PROVENANCE], complete=complete,
            )  # fmt: skip
        if complete:
            await resp.write_eof()
        return resp

    async def get_schema(self, request: web.Request) -> web.Response:
        rid, q = request.match_info["rid"], request.query
        branch = q.get("branchName") or "master"
        self._auth(request, "read", "GetDatasetSchemaPermissionDenied", branch)
        self.store.require_branch(rid, branch)
        rids = self.store.history_rids(rid, branch, q.get("endTransactionRid"))
        found = self.store.schema(rid, branch, rids, q.get("versionId"))
        if found is None:
            raise not_found("SchemaNotFound", datasetRid=rid, branchName=branch)
        return web.json_response(found)

    async def put_schema(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        body = await json_object(request)
        branch, end, reader = put_schema_args(body)
        principal = self._auth(request, "write", "PutDatasetSchemaPermissionDenied", branch)
        schema = validate_schema(body.get("schema"))
        self.store.require_branch(rid, branch)
        rids = self.store.history_rids(rid, branch, end) if end else []
        head = rids[-1] if rids else self.store.branch_json(rid, branch).get("transactionRid")
        if head is None:
            raise not_found("DatasetViewNotFound", datasetRid=rid, branch=branch)
        with self.ctx.storage.transaction():
            saved = self.store.put_schema(rid, branch, head, schema)
            self.ctx.provenance.record(
                principal, rid=rid, branch=branch, operation="putSchema", direction="write",
                transactionRid=head, versionId=saved["versionId"], fields=len(schema["fieldSchemaList"]),
                dataframeReader=reader,
            )  # fmt: skip
        return web.json_response(saved)
