"""Media sets API v2 (foundry-api.md section 4), shaped after foundry-platform-sdk's `v2/media_sets`.

Where the SDK and foundry-api.md differ, the SDK wins:
- creating a transaction answers a bare JSON string (the SDK's `TransactionId` is a UUID string);
  commit and abort answer 204 with no body;
- every endpoint whose SDK method takes `preview` (get media set, transactions, upload, getRidByPath)
  needs `preview=true`, as Foundry answers beta endpoints without it (ApiFeaturePreviewUsageOnly);
- item info carries `sizeBytesLong` (required by the SDK model) besides `sizeBytes`;
- a second open transaction on a branch is 409 `MediaSetOpenTransactionAlreadyExists`.
A transactional set needs `transactionId` on uploads, and its items appear only on commit; in a
non-transactional set an upload without one is visible at once. The last write to a path wins.
"""

from __future__ import annotations

import mimetypes
import re
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .api_params import require_preview
from .auth import Access, Principal, now_iso
from .blob_io import delete_blobs, receive_blob
from .errors import ApiError, bad_request, conflict, not_found, permission_denied

if TYPE_CHECKING:
    from .app import FakeContext

SCHEMA = """
CREATE TABLE IF NOT EXISTS ms_sets (
    rid TEXT PRIMARY KEY,
    transactional INTEGER NOT NULL,
    paths_required INTEGER NOT NULL,
    media_schema TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ms_branches (
    media_set_rid TEXT NOT NULL,
    name TEXT NOT NULL,
    view_rid TEXT NOT NULL UNIQUE,
    PRIMARY KEY (media_set_rid, name)
);
CREATE TABLE IF NOT EXISTS ms_transactions (
    id TEXT PRIMARY KEY,
    media_set_rid TEXT NOT NULL,
    branch TEXT NOT NULL,
    status TEXT NOT NULL,           -- OPEN | COMMITTED | ABORTED
    created_time TEXT NOT NULL,
    closed_time TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS ms_one_open_transaction
    ON ms_transactions (media_set_rid, branch) WHERE status = 'OPEN';
CREATE TABLE IF NOT EXISTS ms_items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rid TEXT NOT NULL UNIQUE,
    media_set_rid TEXT NOT NULL,
    branch TEXT NOT NULL,
    path TEXT,
    transaction_id TEXT,            -- NULL: written outside a transaction
    visible INTEGER NOT NULL,       -- 0 until its transaction commits
    logical_timestamp INTEGER,      -- microseconds, strictly increasing per media set; set when visible
    mime_type TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    blob_id TEXT NOT NULL,
    created_time TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ms_items_by_path ON ms_items (media_set_rid, branch, path, visible, logical_timestamp);
CREATE INDEX IF NOT EXISTS ms_items_by_time ON ms_items (media_set_rid, logical_timestamp);
CREATE INDEX IF NOT EXISTS ms_items_by_transaction ON ms_items (transaction_id);
"""

BASE = "/api/v2/mediasets"
MAX_PATH_CHARS = 255  # Foundry: paths must be less than 256 characters
_ITEM_RID = re.compile(
    r"^ri\.mio\.main\.media-item\.[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_GENERIC_TYPES = {"", "*/*", "application/octet-stream"}
_TWO_GIB = 2**31


@dataclass(frozen=True)
class MediaSet:
    rid: str
    transactional: bool
    paths_required: bool
    media_schema: str


def setup(app: web.Application, ctx: FakeContext) -> None:
    ctx.storage.ensure_schema(SCHEMA)

    def create_for_admin(_: FakeContext, body: dict[str, Any]) -> dict[str, Any]:
        rid = f"ri.mio.main.media-set.{uuid.uuid4()}"
        ctx.insert_resource(rid, "media_set", body["name"], body.get("parentFolderRid"))
        ctx.storage.execute(
            "INSERT INTO ms_sets (rid, transactional, paths_required, media_schema) VALUES (?, ?, ?, ?)",
            (rid, bool(body.get("transactional", False)), bool(body.get("pathsRequired", True)),
             str(body.get("mediaSchema") or "MULTIMODAL")),
        )  # fmt: skip
        view_rid = _ensure_branch(ctx, rid, "master")
        return {"rid": rid, "viewRid": view_rid}

    ctx.resource_creators["media_set"] = create_for_admin
    h = _Handlers(ctx)
    r = app.router
    r.add_get(BASE + "/{rid}", h.get_media_set)
    r.add_post(BASE + "/{rid}/transactions", h.create_transaction)
    r.add_post(BASE + "/{rid}/transactions/{txn}/commit", h.commit)
    r.add_post(BASE + "/{rid}/transactions/{txn}/abort", h.abort)
    r.add_post(BASE + "/{rid}/items", h.upload)
    r.add_get(BASE + "/{rid}/items/getRidByPath", h.rid_by_path)
    r.add_get(BASE + "/{rid}/items/{item}", h.info)
    r.add_get(BASE + "/{rid}/items/{item}/content", h.content)
    r.add_get(BASE + "/{rid}/items/{item}/original", h.content)


def _ensure_branch(ctx: FakeContext, rid: str, branch: str) -> str:
    """Media-set branches come into being on first write; each has one view."""
    row = ctx.storage.one("SELECT view_rid FROM ms_branches WHERE media_set_rid = ? AND name = ?", (rid, branch))
    if row is not None:
        return str(row["view_rid"])
    view_rid = f"ri.mio.main.view.{uuid.uuid4()}"
    ctx.storage.execute(
        "INSERT INTO ms_branches (media_set_rid, name, view_rid) VALUES (?, ?, ?)", (rid, branch, view_rid)
    )
    return view_rid


class _Handlers:
    def __init__(self, ctx: FakeContext) -> None:
        self.ctx = ctx

    def _media_set(self, rid: str) -> MediaSet:
        row = self.ctx.storage.one("SELECT * FROM ms_sets WHERE rid = ?", (rid,))
        if row is None:
            raise not_found("MediaSetNotFound", mediaSetRid=rid)
        return MediaSet(rid, bool(row["transactional"]), bool(row["paths_required"]), row["media_schema"])

    def _auth(
        self, request: web.Request, access: Access, branch: str | None, denied: str = "Default:PermissionDenied"
    ) -> tuple[Principal, MediaSet]:
        """Existence first (404 MediaSetNotFound), then the token's scope (403)."""
        ms = self._media_set(request.match_info["rid"])
        try:
            principal = self.ctx.auth.authorize(request, ms.rid, access, denied, branch)
        except ApiError as exc:
            if exc.status == 403:
                raise permission_denied(denied, mediaSetRid=ms.rid) from None
            raise
        return principal, ms

    def _branch(self, request: web.Request, rid: str) -> str:
        """branchName or viewRid (only one may be given); default master."""
        q = request.query
        given = [k for k in ("branchName", "branchRid", "viewRid") if q.get(k)]
        if len(given) > 1:
            raise bad_request("ConflictingMediaSetIdentifiers", mediaSetRid=rid, provided=",".join(given))
        if q.get("branchRid"):
            raise bad_request("Default:InvalidArgument", message="the fake addresses branches by branchName or viewRid")
        if q.get("viewRid"):
            row = self.ctx.storage.one(
                "SELECT name FROM ms_branches WHERE media_set_rid = ? AND view_rid = ?", (rid, q["viewRid"])
            )
            if row is None:
                raise not_found("Default:NotFound", mediaSetRid=rid, viewRid=q["viewRid"])
            return str(row["name"])
        return q.get("branchName") or "master"

    def _txn(self, rid: str, txn_id: str) -> dict[str, Any]:
        row = self.ctx.storage.one("SELECT * FROM ms_transactions WHERE id = ? AND media_set_rid = ?", (txn_id, rid))
        if row is None:
            raise not_found("TransactionNotFound", mediaSetRid=rid, transactionId=txn_id)
        return dict(row)

    def _item(self, request: web.Request) -> dict[str, Any]:
        rid, item = request.match_info["rid"], request.match_info["item"]
        row = self.ctx.storage.one(
            "SELECT * FROM ms_items WHERE rid = ? AND media_set_rid = ? AND visible = 1", (item, rid)
        )
        if row is None:
            raise not_found("MediaItemNotFound", mediaSetRid=rid, mediaItemRid=item)
        return dict(row)

    def _next_timestamp(self, rid: str) -> int:
        """Microseconds since the epoch, but strictly after every earlier write to this media set."""
        row = self.ctx.storage.one("SELECT MAX(logical_timestamp) AS t FROM ms_items WHERE media_set_rid = ?", (rid,))
        last = row["t"] if row is not None and row["t"] is not None else 0
        return max(time.time_ns() // 1000, int(last) + 1)

    # Media sets and transactions

    async def get_media_set(self, request: web.Request) -> web.Response:
        require_preview(request)
        _, ms = self._auth(request, "read", None)
        policy = "batchTransactions" if ms.transactional else "noTransactions"
        return web.json_response(
            {"rid": ms.rid, "mediaSchema": ms.media_schema, "defaultBranchName": "master",
             "transactionPolicy": {"type": policy}, "pathsRequired": ms.paths_required}
        )  # fmt: skip

    async def create_transaction(self, request: web.Request) -> web.Response:
        require_preview(request)
        rid = request.match_info["rid"]
        branch = request.query.get("branchName") or "master"
        self._auth(request, "write", branch)
        txn_id = str(uuid.uuid4())
        try:
            with self.ctx.storage.transaction():
                _ensure_branch(self.ctx, rid, branch)
                self.ctx.storage.execute(
                    "INSERT INTO ms_transactions (id, media_set_rid, branch, status, created_time)"
                    " VALUES (?, ?, ?, 'OPEN', ?)",
                    (txn_id, rid, branch, now_iso()),
                )
        except sqlite3.IntegrityError:
            raise conflict("MediaSetOpenTransactionAlreadyExists", mediaSetRid=rid) from None
        return web.json_response(txn_id)  # a bare JSON string, as the SDK's TransactionId expects

    def _close(self, request: web.Request, status: str) -> tuple[Principal, dict[str, Any], list[dict[str, Any]]]:
        """OPEN -> `status`; call inside a storage transaction."""
        require_preview(request)
        rid, txn_id = request.match_info["rid"], request.match_info["txn"]
        self._auth(request, "write", None)
        txn = self._txn(rid, txn_id)
        principal, _ = self._auth(request, "write", txn["branch"])
        if txn["status"] != "OPEN":
            raise bad_request(
                "TransactionNotOpen", mediaSetRid=rid, transactionId=txn_id, transactionStatus=txn["status"]
            )
        items = [
            dict(r)
            for r in self.ctx.storage.query("SELECT * FROM ms_items WHERE transaction_id = ? ORDER BY seq", (txn_id,))
        ]
        self.ctx.storage.execute(
            "UPDATE ms_transactions SET status = ?, closed_time = ? WHERE id = ?", (status, now_iso(), txn_id)
        )
        return principal, txn, items

    async def commit(self, request: web.Request) -> web.Response:
        with self.ctx.storage.transaction():
            principal, txn, items = self._close(request, "COMMITTED")
            for item in items:  # in upload order, so a later write to a path wins
                ts = self._next_timestamp(txn["media_set_rid"])
                self.ctx.storage.execute(
                    "UPDATE ms_items SET visible = 1, logical_timestamp = ? WHERE rid = ?", (ts, item["rid"])
                )
            self.ctx.provenance.record(
                principal, rid=txn["media_set_rid"], branch=txn["branch"], operation="commitMediaTransaction",
                direction="write", record_count=len(items), transactionId=txn["id"],
                sizeBytes=sum(i["size_bytes"] for i in items), paths=[i["path"] for i in items[:100]],
            )  # fmt: skip
        return web.Response(status=204)

    async def abort(self, request: web.Request) -> web.Response:
        with self.ctx.storage.transaction():
            _, txn, items = self._close(request, "ABORTED")
            self.ctx.storage.execute("DELETE FROM ms_items WHERE transaction_id = ?", (txn["id"],))
        delete_blobs(self.ctx.storage, [i["blob_id"] for i in items])
        return web.Response(status=204)

    # Items

    def _upload_target(self, request: web.Request, ms: MediaSet) -> tuple[str, str | None, str | None, str]:
        """(branch, transaction id, path, item rid), all validated before any byte is read."""
        q = request.query
        path = q.get("mediaItemPath") or None
        if path is None and ms.paths_required:
            raise bad_request("MissingMediaItemPath", mediaSetRid=ms.rid)
        if path is not None and len(path) > MAX_PATH_CHARS:
            raise bad_request(
                "Default:InvalidArgument", mediaSetRid=ms.rid, message="mediaItemPath must be under 256 characters"
            )
        item_rid = q.get("mediaItemRid") or f"ri.mio.main.media-item.{uuid.uuid4()}"
        if not _ITEM_RID.match(item_rid):
            raise bad_request(
                "InvalidMediaItemRid", mediaItemRid=item_rid, reason="expected ri.mio.main.media-item.<uuid>"
            )
        if self.ctx.storage.one("SELECT 1 FROM ms_items WHERE rid = ?", (item_rid,)):
            raise conflict("MediaItemRidAlreadyExists", mediaItemRid=item_rid)
        branch = self._branch(request, ms.rid)
        txn_id = q.get("transactionId") or None
        if txn_id is not None:
            txn = self._txn(ms.rid, txn_id)
            if txn["status"] != "OPEN":
                raise bad_request(
                    "TransactionNotOpen", mediaSetRid=ms.rid, transactionId=txn_id, transactionStatus=txn["status"]
                )
            if q.get("branchName") and q["branchName"] != txn["branch"]:
                raise bad_request("Default:InvalidArgument", message="the transaction is on another branch")
            branch = txn["branch"]
        elif ms.transactional:
            raise bad_request(
                "Default:InvalidArgument",
                mediaSetRid=ms.rid,
                message="transactionId is required: the set is transactional",
            )
        return branch, txn_id, path, item_rid

    async def upload(self, request: web.Request) -> web.Response:
        require_preview(request)
        _, ms = self._auth(request, "write", None)
        branch, txn_id, path, item_rid = self._upload_target(request, ms)
        principal, _ = self._auth(request, "write", branch)
        declared = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        mime = declared if declared not in _GENERIC_TYPES else None
        mime = mime or (mimetypes.guess_type(path)[0] if path else None) or "application/octet-stream"
        blob_id, size = await receive_blob(self.ctx.storage, request)
        try:
            if size == 0:
                raise bad_request("MissingMediaItemContent", mediaSetRid=ms.rid, **({"path": path} if path else {}))
            with self.ctx.storage.transaction():
                view_rid = _ensure_branch(self.ctx, ms.rid, branch)
                if txn_id is not None and self._txn(ms.rid, txn_id)["status"] != "OPEN":  # closed while we read
                    raise bad_request("TransactionNotOpen", mediaSetRid=ms.rid, transactionId=txn_id)
                visible = txn_id is None
                self.ctx.storage.execute(
                    "INSERT INTO ms_items (rid, media_set_rid, branch, path, transaction_id, visible,"
                    " logical_timestamp, mime_type, size_bytes, blob_id, created_time)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (item_rid, ms.rid, branch, path, txn_id, visible, self._next_timestamp(ms.rid) if visible else None,
                     mime, size, blob_id, now_iso()),
                )  # fmt: skip
                self.ctx.provenance.record(
                    principal, rid=ms.rid, branch=branch, operation="uploadMediaItem", direction="write",
                    mediaItemRid=item_rid, path=path, sizeBytes=size, transactionId=txn_id, mimeType=mime,
                )  # fmt: skip
        except BaseException:
            delete_blobs(self.ctx.storage, [blob_id])
            raise
        return web.json_response({"mediaItemRid": item_rid, "mediaSetViewRid": view_rid})

    async def rid_by_path(self, request: web.Request) -> web.Response:
        require_preview(request)
        rid = request.match_info["rid"]
        self._auth(request, "read", None, "GetMediaItemRidByPathPermissionDenied")
        branch = self._branch(request, rid)
        self._auth(request, "read", branch, "GetMediaItemRidByPathPermissionDenied")
        path = request.query.get("mediaItemPath")
        if not path:
            raise bad_request("MissingMediaItemPath", mediaSetRid=rid)
        row = self.ctx.storage.one(
            "SELECT rid FROM ms_items WHERE media_set_rid = ? AND branch = ? AND path = ? AND visible = 1"
            " ORDER BY logical_timestamp DESC, seq DESC LIMIT 1",
            (rid, branch, path),
        )
        return web.json_response({} if row is None else {"mediaItemRid": row["rid"]})

    async def info(self, request: web.Request) -> web.Response:
        self._auth(request, "read", None)
        item = self._item(request)
        self._auth(request, "read", item["branch"])
        view = self.ctx.storage.one(
            "SELECT view_rid FROM ms_branches WHERE media_set_rid = ? AND name = ?",
            (item["media_set_rid"], item["branch"]),
        )
        assert view is not None, "an item's branch always exists"
        body: dict[str, Any] = {"viewRid": view["view_rid"], "logicalTimestamp": item["logical_timestamp"]}
        if item["path"] is not None:
            body["path"] = item["path"]
        body["mimeType"] = body["originallyUploadedFileMimeType"] = item["mime_type"]
        if item["size_bytes"] < _TWO_GIB:  # the SDK documents sizeBytes as omitted from 2 GiB
            body["sizeBytes"] = item["size_bytes"]
        body["sizeBytesLong"] = item["size_bytes"]
        return web.json_response(body)

    async def content(self, request: web.Request) -> web.StreamResponse:
        self._auth(request, "read", None)
        item = self._item(request)
        principal, _ = self._auth(request, "read", item["branch"])
        self.ctx.provenance.record(
            principal, rid=item["media_set_rid"], branch=item["branch"], operation="readMediaItem", direction="read",
            mediaItemRid=item["rid"], path=item["path"], sizeBytes=item["size_bytes"],
        )  # fmt: skip
        blob = self.ctx.storage.blob_path(item["blob_id"])
        return web.FileResponse(blob, headers={"Content-Type": item["mime_type"]})
