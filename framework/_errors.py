"""Typed errors: configuration problems, Foundry error envelopes, and invalid records.

Every error the framework raises on purpose is a `ConnectorError`; match on the narrowest you need:

    ConnectorError
    ├── ConfigError                 the environment, a setting or the connector declaration is wrong (exit 2)
    ├── FoundryError                Foundry answered with its error envelope; `error_name` says what
    │   ├── BadRequestError         400
    │   ├── UnauthorizedError       401, after re-reading the token once
    │   ├── PermissionDeniedError   403
    │   ├── NotFoundError           404
    │   ├── ConflictError           409
    │   ├── RequestTooLargeError    413
    │   └── RetryableError          429, 5xx: raised only once retries are exhausted
    │       └── MalformedResponseError  a 2xx whose body is not the JSON it should be (garbage, truncated)
    ├── MediaItemPathError          a media item path Foundry would reject (also a ValueError)
    └── RecordValidationError       a record does not match its pydantic model
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class ConnectorError(Exception):
    """Base of every error the framework raises on purpose."""


class ConfigError(ConnectorError):
    """The environment or the connector declaration is wrong. `str(err)` is one line saying what to do."""


class FoundryError(ConnectorError):
    """Foundry answered with its error envelope.

    `error_name` is the stable thing to match on (`StreamNotFound`, `OpenTransactionAlreadyExists`...).
    """

    status: int = 0
    retry_after_s: float | None = None  # the server's Retry-After, when it sent one

    def __init__(
        self,
        status: int,
        error_code: str,
        error_name: str,
        parameters: dict[str, Any] | None = None,
        error_instance_id: str | None = None,
        *,
        method: str = "",
        url: str = "",
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.error_name = error_name
        self.parameters = dict(parameters or {})
        self.error_instance_id = error_instance_id
        self.method = method
        self.url = url
        where = f" on {method} {url}" if method else ""
        params = f" {self.parameters}" if self.parameters else ""
        super().__init__(f"{status} {error_code} {error_name}{params}{where}")


class BadRequestError(FoundryError):
    """400: the request is wrong (for example `RecordDoesNotMatchStreamSchema`); retrying will not help."""


class UnauthorizedError(FoundryError):
    """401: the job token is missing, unknown or expired (already re-read from BUILD2_TOKEN once)."""


class PermissionDeniedError(FoundryError):
    """403: the job token is not scoped to this resource; declare it as an input or output of the job."""


class NotFoundError(FoundryError):
    """404: the stream, dataset, branch, transaction, file, media set or item does not exist."""


class ConflictError(FoundryError):
    """409: for example `OpenTransactionAlreadyExists`."""


class RequestTooLargeError(FoundryError):
    """413: a record or body over the server's limit."""


class RetryableError(FoundryError):
    """429, 503 and other 5xx: retried with backoff; raised only once retries are exhausted."""


class MalformedResponseError(RetryableError):
    """A 2xx answer whose body is not valid JSON (garbage from a proxy, a body cut short): retried like a 503,
    since the request may well succeed again; `parameters["problem"]` says what was wrong."""

    def __init__(self, status: int, problem: str, *, method: str = "", url: str = "") -> None:
        name, params = "MalformedResponse", {"problem": problem}
        super().__init__(status, "MALFORMED_RESPONSE", name, params, method=method, url=url)


_BY_STATUS: dict[int, type[FoundryError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestTooLargeError,
    429: RetryableError,
}


def error_from_envelope(status: int, body: Any, *, method: str = "", url: str = "") -> FoundryError:
    """Build the typed error for a failed response; tolerates bodies that are not envelopes."""
    cls = _BY_STATUS.get(status) or (RetryableError if status >= 500 else FoundryError)
    if isinstance(body, dict) and "errorName" in body:
        return cls(
            status,
            str(body.get("errorCode", "")),
            str(body["errorName"]),
            body.get("parameters") if isinstance(body.get("parameters"), dict) else None,
            body.get("errorInstanceId"),
            method=method,
            url=url,
        )
    detail = {"body": body[:200]} if isinstance(body, str) and body else None
    return cls(status, "UNKNOWN", f"HTTP{status}", detail, None, method=method, url=url)


class MediaItemPathError(ConnectorError, ValueError):
    """A media item path Foundry would reject (empty, or 256 characters or more)."""


class RecordValidationError(ConnectorError):
    """A record does not match its pydantic model. Carries where it came from so nothing is lost silently."""

    def __init__(
        self,
        alias: str,
        message: str,
        raw: Any,
        *,
        partition: str | None = None,
        offset: int | None = None,
    ) -> None:
        self.alias = alias
        self.message = message
        self.raw = raw
        self.partition = partition
        self.offset = offset
        where = f" at partition {partition} offset {offset}" if offset is not None else ""
        super().__init__(f"record on {alias!r}{where} does not match its model: {message}")


def validation_message(exc: ValidationError) -> str:
    """One line: pydantic's multi-line report flattened to `field: problem; ...`."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in exc.errors())
