"""Query and body parsing shared by the dataset and media-set handlers, with Foundry's error names."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from .errors import bad_request

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10_000


async def json_object(request: web.Request) -> dict[str, Any]:
    body = await request.json() if request.can_read_body else {}
    if not isinstance(body, dict):
        raise bad_request("InvalidRequestBody", message="expected a JSON object")
    return body


def page_params(request: web.Request) -> tuple[int, str | None]:
    raw = request.query.get("pageSize")
    try:
        size = DEFAULT_PAGE_SIZE if raw is None else int(raw)
    except ValueError:
        raise bad_request("InvalidPageSize", pageSize=raw) from None
    if size <= 0:
        raise bad_request("InvalidPageSize", pageSize=size)
    return min(size, MAX_PAGE_SIZE), request.query.get("pageToken") or None


def paged(keys: list[str], size: int, token: str | None) -> tuple[list[str], str | None]:
    """`keys` sorted; the opaque token is the first key of the next page, so paging survives inserts."""
    start = 0
    if token:
        try:
            after = base64.urlsafe_b64decode(token.encode()).decode()
        except ValueError:
            raise bad_request("Default:InvalidArgument", pageToken=token, message="unknown page token") from None
        start = next((i for i, k in enumerate(keys) if k >= after), len(keys))
    rest = keys[start + size : start + size + 1]
    return keys[start : start + size], base64.urlsafe_b64encode(rest[0].encode()).decode() if rest else None


def listing(data: list[dict[str, Any]], token: str | None) -> web.Response:
    """Foundry's paged response: `nextPageToken` absent on the last page."""
    body: dict[str, Any] = {"data": data}
    if token:
        body["nextPageToken"] = token
    return web.json_response(body)


def non_negative_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise bad_request("Default:InvalidArgument", **{name: raw}, message=f"{name} must be a non-negative integer")
    return value


def require_preview(request: web.Request) -> None:
    """Foundry rejects beta endpoints (those whose SDK method takes `preview`) without `preview=true`."""
    if request.query.get("preview", "").lower() != "true":
        raise bad_request("ApiFeaturePreviewUsageOnly", message="this endpoint needs preview=true")
