"""Record JSON on the wire and on disk: parse a publish body once, encode each record once, and build read
responses from the stored bytes instead of decoding and re-encoding them.

orjson is several times faster than the stdlib, but not identical on every input: it turns integers past
64 bits into floats, and refuses NaN, Infinity, lone surrogates and non-UTF-8 charsets, all of which
`request.json()` accepts. So a body is parsed with orjson only when it cannot hold any of those (no run
of 19 digits; orjson's own refusals), and otherwise exactly as before. `strict` says which parser ran:
records from a strict parse are encoded with orjson (which then loses nothing), the rest with the stdlib,
so stored values are what the old code stored. Encoded records never contain a newline byte (JSON escapes
control characters), which lets the store keep a batch as newline-separated JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

from .. import params
from ..errors import bad_request

Records = list[tuple[int, bytes]]  # (offset, the record's stored JSON)

# 19 digits in a row may be an integer past the 64-bit range orjson keeps exact (a false alarm, such as a
# long string of digits, costs only speed). Every digit maps to 0 so one substring search finds any such
# run: ten times faster than a regular expression, which was a fifth of publish's time.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19
_UTF8 = frozenset({None, "utf-8", "utf8"})
_NEWLINE = orjson.Fragment(b"\n")


def parse_json(raw: bytes, charset: str | None) -> tuple[Any, bool]:
    """(value, strict): orjson's parse when it is exactly what `json.loads` gives, else json.loads's."""
    if (charset or "utf-8").lower() in _UTF8 and _LONG_NUMBER not in raw.translate(_DIGITS_TO_ZERO):
        try:
            return orjson.loads(raw), True
        except orjson.JSONDecodeError:
            pass
    return params.parse_json(raw, charset), False  # malformed bytes, JSON or nesting: a 400, never a 500


async def json_body(request: web.Request, *, optional: bool = False) -> tuple[dict[str, Any], bool]:
    """`params.json_object` with the parse above: (the body as a JSON object, strict)."""
    if optional and not request.can_read_body:
        return {}, True
    body, strict = parse_json(await request.read(), request.charset)
    if not isinstance(body, dict):
        raise bad_request("InvalidRequestBody", message="expected a JSON object")
    return body, strict


async def json_list(request: web.Request) -> tuple[Any, bool]:
    """Any JSON body (the legacy jsonRecords list), and whether the parse was strict."""
    return parse_json(await request.read(), request.charset)


def encode_records(records: list[dict[str, Any]], strict: bool) -> list[bytes]:
    """Each record's compact JSON, as stored and as measured against the record size limit.

    orjson encodes the batch as one list with a raw newline (a Fragment, written verbatim) between records,
    and the result is split there: orjson never writes a newline byte of its own, and one `orjson.dumps`
    per record costs 30 times more here (each result is allocated big, then shrunk).
    """
    if not strict:
        return [json.dumps(v, separators=(",", ":")).encode() for v in records]
    if not records:
        return []
    interleaved: list[Any] = [_NEWLINE] * (2 * len(records) - 1)
    interleaved[::2] = records
    pieces = orjson.dumps(interleaved)[1:-1].split(b",\n,")
    assert len(pieces) == len(records), "orjson wrote a newline byte of its own"
    return pieces


def offset_values(records: Records) -> bytes:
    """`[{"offset": o, "value": ...}, ...]` (getRecords, recordsV2, readRecords) from stored bytes."""
    return b"[" + b",".join([b'{"offset":%d,"value":%s}' % record for record in records]) + b"]"


def by_partition(taken: dict[int, Records]) -> bytes:
    """readRecords' `{"recordsByPartition": {"0": [...], ...}}`."""
    parts = [b'"%d":%s' % (p, offset_values(records)) for p, records in taken.items()]
    return b'{"recordsByPartition":{' + b",".join(parts) + b"}}"


def latest_values(records: Iterable[tuple[int, int, bytes]]) -> bytes:
    """The legacy records list, `[{"value": ..., "offset": o, "partitionId": "p"}, ...]`."""
    items = [b'{"value":%s,"offset":%d,"partitionId":"%d"}' % (v, o, p) for p, o, v in records]
    return b"[" + b",".join(items) + b"]"


def json_response(body: bytes) -> web.Response:
    """What `web.json_response` sends (same content type and charset), from bytes already encoded."""
    return web.Response(body=body, content_type="application/json", charset="utf-8")
