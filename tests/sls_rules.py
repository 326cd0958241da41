"""The SLS `service.1` field rules, checked line by line by the logging tests (unit and process)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

LEVELS = {"FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"}
FIELDS = {"type", "level", "time", "origin", "thread", "message", "params", "unsafeParams", "tags", "stacktrace"}


def assert_service_1(line: dict[str, Any]) -> None:
    """Required keys and their types, level names, RFC 3339 UTC time with sub-second precision."""
    assert set(line) <= FIELDS, f"unknown keys {set(line) - FIELDS} in {line}"
    assert line["type"] == "service.1", line
    assert line["level"] in LEVELS, line
    assert isinstance(line["message"], str) and line["message"], line
    time = line["time"]
    assert isinstance(time, str) and time.endswith("Z") and "." in time, line
    parsed = datetime.fromisoformat(time)
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0, line  # type: ignore[union-attr]
    for key in ("origin", "thread", "stacktrace"):
        assert key not in line or isinstance(line[key], str), line
    for key in ("params", "unsafeParams", "tags"):
        assert isinstance(line.get(key, {}), dict), line
    assert all(isinstance(v, str) for v in line.get("tags", {}).values()), line
