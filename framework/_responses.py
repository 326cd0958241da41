"""Reading Foundry's answers: the JSON of a success (a malformed one is a retryable fault), the typed error."""

from __future__ import annotations

import contextlib
import json as jsonlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
from yarl import URL

from ._errors import FoundryError, MalformedResponseError, error_from_envelope

# Connection faults worth another try; aiohttp's ServerDisconnectedError and socket timeouts are among them.
CONNECTION_FAULTS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After as delay-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


async def read_body(resp: aiohttp.ClientResponse) -> bytes:
    return await resp.read()


async def decode_json(resp: aiohttp.ClientResponse) -> Any:
    """The JSON of a 2xx; a body labelled JSON that does not parse is a retryable `MalformedResponseError`."""
    return _decoded(resp, await resp.read())


def decode_json_with(fast: Callable[[bytes], Any]) -> Callable[[aiohttp.ClientResponse], Awaitable[Any]]:
    """`decode_json`, but a JSON body goes through `fast` first (e.g. pydantic's `validate_json`, which parses and
    validates in one pass); when `fast` raises a ValueError (a pydantic ValidationError is one), the body is read
    as `decode_json` reads it, so a caller gets either what `fast` returned or the plain JSON, and a malformed
    body is still a retryable `MalformedResponseError`."""

    async def decode(resp: aiohttp.ClientResponse) -> Any:
        raw = await resp.read()
        if resp.status != 204 and raw and _is_json(resp):
            try:
                return fast(raw)
            except ValueError:
                pass
        return _decoded(resp, raw)

    return decode


def _is_json(resp: aiohttp.ClientResponse) -> bool:
    return resp.content_type == "application/json" or resp.content_type.endswith("+json")


def _decoded(resp: aiohttp.ClientResponse, raw: bytes) -> Any:
    if resp.status == 204 or not raw:
        return None
    if _is_json(resp):
        try:
            return loads(raw)
        except ValueError as exc:  # UnicodeDecodeError is one too
            problem = f"body of {len(raw)} bytes is not valid JSON ({type(exc).__name__} at {_where(exc)})"
            url = str(resp.url.with_query(None))
            raise MalformedResponseError(resp.status, problem, method=resp.method, url=url) from None
    return raw


def loads(raw: bytes) -> Any:
    """JSON in Rust (orjson); what orjson refuses but the standard library reads (NaN, huge integers) is read
    by the standard library, so what parses is exactly what parsed before."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return jsonlib.loads(raw)


def dumps(value: Any) -> str:
    """JSON for request bodies (aiohttp's `json_serialize`): orjson, with non-string keys as strings like the
    standard library; what orjson cannot encode (NaN stays NaN, subclasses of int...) falls back to it."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return jsonlib.dumps(value)


def dumps_bytes(value: Any) -> bytes:
    """`dumps` as UTF-8 bytes, what a request body is sent as: no str round trip on the way to the socket."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return jsonlib.dumps(value).encode()


def _where(exc: ValueError) -> str:
    """Where parsing failed, never the body itself (it may hold records)."""
    if isinstance(exc, jsonlib.JSONDecodeError):
        return f"line {exc.lineno} column {exc.colno}"
    return "the start"


async def error_of(resp: aiohttp.ClientResponse, method: str, url: URL) -> FoundryError:
    """The typed error; the URL loses its query string, where secrets such as tokens can travel."""
    try:
        text = await resp.text(errors="replace")
    except CONNECTION_FAULTS:
        text = ""
    body: Any = text
    with contextlib.suppress(ValueError):
        body = jsonlib.loads(text) if text else text
    err = error_from_envelope(resp.status, body, method=method, url=str(url.with_query(None)))
    err.retry_after_s = _retry_after_s(resp.headers.get("Retry-After"))
    return err
