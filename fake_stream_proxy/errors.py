"""Foundry's error envelope, raised by handlers and rendered by one middleware.

A method a path does not serve answers 404 `Default:NotFound` (errorCode NOT_FOUND) with the method and
path, like a path nothing serves: the SDK maps errors by status, and has no class for a 405 (it would
surface as a bare PalantirRPCException). Every call the SDK makes is served, so only hand-made requests
see it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

_log = logging.getLogger(__name__)

_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHORIZED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "TIMEOUT",
    409: "CONFLICT",
    413: "REQUEST_ENTITY_TOO_LARGE",
    415: "INVALID_ARGUMENT",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL",
    503: "INTERNAL",
}


def _parameter(value: Any) -> Any:
    """Strings and lists (the SDK types some parameters `List[str]`) as they are; anything else as JSON text."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v) for v in value]
    return json.dumps(value)


class ApiError(Exception):
    """An error the fake answers with Foundry's envelope: status, errorCode, errorName, parameters."""

    def __init__(self, status: int, error_name: str, **parameters: Any) -> None:
        super().__init__(f"{status} {error_name} {parameters}")
        self.status = status
        self.error_name = error_name
        self.parameters = parameters

    def to_response(self) -> web.Response:
        return envelope_response(self.status, self.error_name, self.parameters)


def envelope_response(status: int, error_name: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body = {
        "errorCode": _CODES.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT"),
        "errorName": error_name,
        "errorInstanceId": str(uuid.uuid4()),
        "parameters": {k: _parameter(v) for k, v in (parameters or {}).items()},
    }
    return web.json_response(body, status=status)


def bad_request(error_name: str, **parameters: Any) -> ApiError:
    return ApiError(400, error_name, **parameters)


def not_found(error_name: str, **parameters: Any) -> ApiError:
    return ApiError(404, error_name, **parameters)


def permission_denied(error_name: str, **parameters: Any) -> ApiError:
    return ApiError(403, error_name, **parameters)


def conflict(error_name: str, **parameters: Any) -> ApiError:
    return ApiError(409, error_name, **parameters)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves the fake as an envelope, including aiohttp's own 404/405/413."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.to_response()
    except web.HTTPRequestEntityTooLarge as exc:
        return envelope_response(413, "RecordTooLarge", {"maxSizeBytes": str(exc.text or "")})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status in (404, 405):
            return envelope_response(404, "Default:NotFound", {"method": request.method, "path": request.path})
        name = "RecordTooLarge" if exc.status == 413 else f"Default:{exc.reason.replace(' ', '')}"
        return envelope_response(exc.status, name, {"path": request.path})
    except json.JSONDecodeError as exc:
        return envelope_response(400, "InvalidRequestBody", {"message": f"body is not valid JSON: {exc}"})
    except Exception:
        _log.exception("unhandled error in %s %s", request.method, request.path)
        return envelope_response(500, "Default:Internal", {"path": request.path})
