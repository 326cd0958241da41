"""Palantir's SLS `service.1` log shape, and the one place that decides which log fields are safe.

Foundry's container logging in SLS format captures only lines in this shape, and its log viewer shows
`params` (safe: no customer data) apart from `unsafeParams` (may carry data). A field is safe when its key
is in `SAFE_PARAMS` (or was added with `mark_safe`), or its value was wrapped with `safe(...)`; everything
else is unsafe. Keys in `TAG_KEYS` with string values become `tags`. Secrets are redacted before this
runs, so no field of either kind can hold one.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from structlog.typing import EventDict, WrappedLogger

#: Keys whose values describe the pipeline, never the data: counts, aliases, positions, rates, durations,
#: error names. Extend with `mark_safe`; wrap one value with `safe(...)`.
SAFE_PARAMS: set[str] = {
    "alias",
    "aliases",
    "attempt",
    "attempts",
    "batch",
    "branch",
    "connector",
    "count",
    "dead_letter",
    "error_name",
    "errors",
    "input",
    "inputs",
    "invalid",
    "items",
    "kind",
    "lag",
    "max_attempts",
    "method",
    "mode",
    "offset",
    "offsets",
    "output",
    "outputs",
    "partition",
    "partitions",
    "position",
    "positions",
    "per_s",
    "rate",
    "records",
    "rejected",
    "rid",
    "rows",
    "signal",
    "size",
    "source",
    "status",
    "transaction",
}
#: Suffixes of safe keys: durations (`timeout_s`, `delay_ms`), sizes (`body_bytes`), counts, rids.
_SAFE_SUFFIX = re.compile(r"_(s|ms|bytes|count|total|rid|rate)$")
#: Context keys shown as the record's tags (string values only).
TAG_KEYS = ("connector", "job_rid", "runtime_id")

_LEVELS = {"critical": "FATAL", "fatal": "FATAL", "exception": "ERROR", "error": "ERROR", "warning": "WARN"}
_LEVELS |= {"warn": "WARN", "info": "INFO", "debug": "DEBUG", "notset": "TRACE", "trace": "TRACE"}
# structlog's own bookkeeping keys: they become top-level service.1 fields, never params.
_META = {"event", "level", "logger", "timestamp", "exception", "exc_info", "stack", "_record", "_from_structlog"}


@dataclass(frozen=True, slots=True)
class SafeArg:
    """A log value its caller vouches for: rendered as-is in every format, and as a safe param in SLS."""

    value: Any

    def __str__(self) -> str:
        return str(self.value)


def safe(value: Any) -> SafeArg:
    """Mark one logged value as safe: `log.info("fetched", source=safe(source_name))`."""
    return SafeArg(value)


def mark_safe(*keys: str) -> None:
    """Treat these log keys as safe in every later line (e.g. a connector's own counters)."""
    SAFE_PARAMS.update(keys)


def is_safe_key(key: str) -> bool:
    return key in SAFE_PARAMS or bool(_SAFE_SUFFIX.search(key))


def unwrap(value: Any) -> Any:
    """The JSON-ready value of a log field: `SafeArg`s unwrapped, anything else left for the encoder."""
    return value.value if isinstance(value, SafeArg) else value


def _time(event_dict: EventDict) -> str:
    stamp = event_dict.get("timestamp")
    if isinstance(stamp, str) and stamp:
        return stamp if stamp.endswith("Z") else stamp.replace("+00:00", "Z")
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def to_service_log(event_dict: EventDict) -> dict[str, Any]:
    """One structlog event as a `service.1` object (after redaction and exception formatting)."""
    level = _LEVELS.get(str(event_dict.get("level", "info")).lower(), "INFO")
    record: dict[str, Any] = {
        "type": "service.1",
        "level": level,
        "time": _time(event_dict),
        "origin": str(event_dict.get("logger") or "framework"),
        "thread": threading.current_thread().name,
        "message": str(event_dict.get("event", "")),
    }
    params: dict[str, Any] = {}
    unsafe: dict[str, Any] = {}
    tags: dict[str, str] = {}
    for key, value in event_dict.items():
        if key in _META:
            continue
        if key in TAG_KEYS and isinstance(value, str):
            tags[key] = value
            continue
        (params if isinstance(value, SafeArg) or is_safe_key(key) else unsafe)[key] = unwrap(value)
    record["params"] = params
    record["unsafeParams"] = unsafe
    record["tags"] = tags
    stacktrace = event_dict.get("exception") or event_dict.get("stack")
    if stacktrace:
        record["stacktrace"] = str(stacktrace)
    return record


def render_sls(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> str:
    """structlog renderer: one `service.1` JSON object per line."""
    return json.dumps(to_service_log(event_dict), default=str, ensure_ascii=False, separators=(",", ":"))
