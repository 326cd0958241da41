"""Query and body parsing shared by every service's handlers, with Foundry's error names."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from .errors import bad_request

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10_000
# Offsets and limits are Foundry Longs: anything outside int64 is a 400 (SQLite could not bind it anyway).
MAX_LONG = 2**63 - 1


def parse_json(raw: bytes, charset: str | None = None) -> Any:
    """`raw` as JSON; every way a body can be malformed (bad bytes, bad JSON, absurd nesting) is a 400."""
    try:
        return json.loads(raw.decode(charset or "utf-8"))
    except (UnicodeDecodeError, LookupError):
        raise bad_request("InvalidRequestBody", message=f"body is not valid {charset or 'UTF-8'} text") from None
    except RecursionError:
        raise bad_request("InvalidRequestBody", message="body nests JSON too deeply") from None
    except json.JSONDecodeError as exc:
        raise bad_request("InvalidRequestBody", message=f"body is not valid JSON: {exc}") from None


async def read_json(request: web.Request) -> Any:
    """The body as JSON, with `parse_json`'s 400s (aiohttp's `request.json()` lets them out as 500s)."""
    return parse_json(await request.read(), request.charset)


async def json_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object. `optional`: no body reads as `{}`; otherwise it is invalid JSON (400)."""
    body = {} if optional and not request.can_read_body else await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("InvalidRequestBody", message="expected a JSON object")
    return body


def optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_request("InvalidRequestBody", message=f"{key} must be a string")
    return value


def require_preview(request: web.Request) -> None:
    """Foundry rejects beta endpoints (those whose SDK method takes `preview`) without `preview=true`."""
    if request.query.get("preview", "").lower() != "true":
        raise bad_request("ApiFeaturePreviewUsageOnly", message="this endpoint needs preview=true")


def query_int(request: web.Request, name: str, default: int | None, minimum: int = 0) -> int:
    """The streams APIs' integer query parameters: required when `default` is None."""
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise bad_request("Default:InvalidArgument", message=f"query parameter {name} is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= MAX_LONG:
        raise bad_request("Default:InvalidArgument", message=f"{name} must be an integer from {minimum} to {MAX_LONG}")
    return value


def non_negative_int(request: web.Request, name: str) -> int | None:
    """The datasets API's optional counts; the error names the raw value, as Foundry's does."""
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_LONG:
        message = f"{name} must be an integer from 0 to {MAX_LONG}"
        raise bad_request("Default:InvalidArgument", **{name: raw}, message=message)
    return value


def page_params(request: web.Request) -> tuple[int, str | None]:
    """`pageSize` (400 InvalidPageSize unless a positive integer; capped) and the raw `pageToken`."""
    raw = request.query.get("pageSize")
    try:
        size = DEFAULT_PAGE_SIZE if raw is None else int(raw)
    except ValueError:
        raise bad_request("InvalidPageSize", pageSize=raw) from None
    if size <= 0:
        raise bad_request("InvalidPageSize", pageSize=size)
    return min(size, MAX_PAGE_SIZE), request.query.get("pageToken") or None


_TOKEN_PREFIX = "p1:"


def _decode_token(token: str) -> str:
    """The key a token resumes at; 400 `InvalidPageToken` for anything this fake did not hand out."""
    try:
        text = base64.urlsafe_b64decode(token.encode("ascii")).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError and UnicodeEncodeError are ValueErrors
        text = ""
    if not text.startswith(_TOKEN_PREFIX):
        raise bad_request("InvalidPageToken", pageToken=token)
    return text[len(_TOKEN_PREFIX) :]


def paged(keys: list[str], size: int, token: str | None) -> tuple[list[str], str | None]:
    """The one paging scheme of every listing: `keys` sorted ascending; the opaque token names the first
    key of the next page, so paging survives inserts and deletes. A token this fake did not issue is a 400.
    """
    start = 0
    if token:
        after = _decode_token(token)
        start = next((i for i, k in enumerate(keys) if k >= after), len(keys))
    rest = keys[start + size : start + size + 1]
    next_token = base64.urlsafe_b64encode((_TOKEN_PREFIX + rest[0]).encode()).decode() if rest else None
    return keys[start : start + size], next_token


def newest_first_key(seq: int) -> str:
    """A `paged` key that sorts rows with a higher `seq` (newer) first."""
    return f"{MAX_LONG - seq:019d}"


def listing(data: list[dict[str, Any]], token: str | None) -> web.Response:
    """Foundry's paged response: `nextPageToken` absent on the last page."""
    body: dict[str, Any] = {"data": data}
    if token:
        body["nextPageToken"] = token
    return web.json_response(body)
