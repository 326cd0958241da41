"""Media Sets API v2 handlers, shaped after foundry-platform-sdk's `v2/media_sets`.

Where the SDK and Palantir's API docs differ, the SDK wins:
- creating a transaction answers a bare JSON string (the SDK's `TransactionId` is a UUID string);
  commit and abort answer 204 with no body;
- every endpoint whose SDK method takes `preview` (get media set, transactions, upload, getRidByPath)
  needs `preview=true`, as Foundry answers beta endpoints without it (ApiFeaturePreviewUsageOnly);
- item info carries `sizeBytesLong` (required by the SDK model) besides `sizeBytes`;
- a second open transaction on a branch is 409 `MediaSetOpenTransactionAlreadyExists`;
- `clearAtPath` answers 204; in a transactional set it needs `transactionId` and shows at commit;
- `media/upload` (temporary upload) is open to any token: it writes to no declared resource. Its items
  are never deleted after the hour the SDK documents;
- `register` (virtual media sets over an external source) and the media transformations (thumbnails,
  tiles, transform jobs) exist only on the platform: 403 (`TransformationPermissionDenied` where the
  SDK declares it), after the set's and item's existence (docs/fake.md).
"""

from __future__ import annotations

import mimetypes
from typing import Any

from aiohttp import web

from ..auth import Access, Principal
from ..blobs import receive_blob
from ..context import FakeContext
from ..errors import bad_request, permission_denied
from ..params import require_preview
from .models import MediaSet, MediaTransaction
from .store import MediaSetStore

_GENERIC_TYPES = {"", "*/*", "application/octet-stream"}


class MediaSetHandlers:
    def __init__(self, ctx: FakeContext, store: MediaSetStore) -> None:
        self.auth = ctx.auth
        self.storage = ctx.storage
        self.store = store

    def create_for_admin(self, body: dict[str, Any]) -> dict[str, Any]:
        rid, view_rid = self.store.create(
            body["name"], body.get("parentFolderRid"), bool(body.get("transactional", False)),
            bool(body.get("pathsRequired", True)), str(body.get("mediaSchema") or "MULTIMODAL"),
        )  # fmt: skip
        return {"rid": rid, "viewRid": view_rid}

    def _auth(
        self, request: web.Request, access: Access, branch: str | None, denied: str = "Default:PermissionDenied"
    ) -> tuple[Principal, MediaSet]:
        """Existence first (404 MediaSetNotFound), then the token's scope (403)."""
        ms = self.store.media_set(request.match_info["rid"])
        principal = self.auth.authorize(request, ms.rid, access, branch=branch, denied=denied, mediaSetRid=ms.rid)
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
            return self.store.branch_of_view(rid, q["viewRid"])
        return q.get("branchName") or "master"

    # Media sets and transactions

    async def get_media_set(self, request: web.Request) -> web.Response:
        require_preview(request)
        _, ms = self._auth(request, "read", None)
        return web.json_response(ms.to_json())

    async def create_transaction(self, request: web.Request) -> web.Response:
        require_preview(request)
        branch = request.query.get("branchName") or "master"
        self._auth(request, "write", branch)
        txn_id = self.store.create_txn(request.match_info["rid"], branch)
        return web.json_response(txn_id)  # a bare JSON string, as the SDK's TransactionId expects

    def _closing(self, request: web.Request) -> tuple[Principal, MediaTransaction]:
        require_preview(request)
        self._auth(request, "write", None)
        txn = self.store.txn(request.match_info["rid"], request.match_info["txn"])
        principal, _ = self._auth(request, "write", txn.branch)
        return principal, txn

    async def commit(self, request: web.Request) -> web.Response:
        self.store.commit(*self._closing(request))
        return web.Response(status=204)

    async def abort(self, request: web.Request) -> web.Response:
        self.store.abort(self._closing(request)[1])
        return web.Response(status=204)

    # Items

    async def upload(self, request: web.Request) -> web.Response:
        require_preview(request)
        q = request.query
        _, ms = self._auth(request, "write", None)
        path, item_rid = self.store.check_new_item(ms, q.get("mediaItemPath") or None, q.get("mediaItemRid") or None)
        txn_id = q.get("transactionId") or None
        branch = self.store.upload_branch(ms, self._branch(request, ms.rid), txn_id, q.get("branchName"))
        principal, _ = self._auth(request, "write", branch)
        declared = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        mime = declared if declared not in _GENERIC_TYPES else None
        mime = mime or (mimetypes.guess_type(path)[0] if path else None) or "application/octet-stream"
        blob = await receive_blob(self.storage, request)
        view_rid = self.store.add_item(principal, ms, branch, txn_id, path, item_rid, mime, blob)
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
        item_rid = self.store.rid_by_path(rid, branch, path)
        return web.json_response({} if item_rid is None else {"mediaItemRid": item_rid})

    async def info(self, request: web.Request) -> web.Response:
        self._auth(request, "read", None)
        item = self.store.item(request.match_info["rid"], request.match_info["item"])
        self._auth(request, "read", item.branch)
        return web.json_response(self.store.item_info(item))

    async def content(self, request: web.Request) -> web.StreamResponse:
        self._auth(request, "read", None)
        item = self.store.item(request.match_info["rid"], request.match_info["item"])
        principal, _ = self._auth(request, "read", item.branch)
        blob = self.store.read_item(principal, item)
        return web.FileResponse(blob, headers={"Content-Type": item.mime_type})

    async def metadata(self, request: web.Request) -> web.Response:
        self._auth(request, "read", None)
        item = self.store.item(request.match_info["rid"], request.match_info["item"])
        self._auth(request, "read", item.branch)
        return web.json_response(item.metadata())

    async def reference(self, request: web.Request) -> web.Response:
        require_preview(request)
        self._auth(request, "read", None)
        item = self.store.item(request.match_info["rid"], request.match_info["item"])
        self._auth(request, "read", item.branch)
        return web.json_response(self.store.reference(item))

    async def clear(self, request: web.Request) -> web.Response:
        require_preview(request)
        _, ms = self._auth(request, "write", None)
        path = request.query.get("mediaItemPath")
        if not path:
            raise bad_request("MissingMediaItemPath", mediaSetRid=ms.rid)
        txn_id = request.query.get("transactionId") or None
        branch = self.store.upload_branch(ms, self._branch(request, ms.rid), txn_id, request.query.get("branchName"))
        principal, _ = self._auth(request, "write", branch)
        self.store.clear(principal, ms, branch, txn_id, path)
        return web.Response(status=204)

    async def upload_media(self, request: web.Request) -> web.Response:
        principal = self.auth.authenticate(request)
        ms = self.store.temporary_set()
        filename = request.query.get("filename") or None
        path, item_rid = self.store.check_new_item(ms, filename, request.query.get("mediaItemRid") or None)
        mime = (mimetypes.guess_type(path)[0] if path else None) or "application/octet-stream"
        blob = await receive_blob(self.storage, request)
        self.store.add_item(principal, ms, "master", None, path, item_rid, mime, blob)
        return web.json_response(self.store.reference(self.store.item(ms.rid, item_rid)))

    # Platform-only calls (docs/fake.md)

    async def register(self, request: web.Request) -> web.Response:
        require_preview(request)
        self._auth(request, "write", None)
        raise permission_denied(
            "Default:PermissionDenied", mediaSetRid=request.match_info["rid"],
            message="registering items of a virtual media set needs its external source: Foundry only",
        )  # fmt: skip

    async def transformation(self, request: web.Request) -> web.Response:
        require_preview(request)
        self._auth(request, "read", None)
        self.store.item(request.match_info["rid"], request.match_info["item"])
        raise permission_denied(
            "TransformationPermissionDenied", underlyingErrorType="PlatformOnly", code="PERMISSION_DENIED",
            mediaSetRid=request.match_info["rid"], message="media transformations run only on Foundry",
        )  # fmt: skip
