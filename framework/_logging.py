"""Structured logging: JSON lines in a container, readable lines on a terminal, secrets never shown.

Foundry captures a compute module's stdout, so in a container every line must be one JSON object: plain
JSON (`json`, shown as one string per line under Foundry's plaintext log format) or Palantir's SLS
`service.1` shape (`sls`, see `_sls.py`). structlog and stdlib `logging` (aiohttp's loggers) share one
renderer and one redaction step.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Callable
from typing import Any, Literal, TextIO, cast, get_args

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from ._sls import SafeArg, render_sls, unwrap

LogFormat = Literal["auto", "json", "console", "sls"]
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)

REDACTED = "[REDACTED]"
_MIN_SECRET_LEN = 4
_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}

# Keys whose values are secrets whatever they hold; `*_path`, `*_names`... only point at or name secrets.
_SENSITIVE_KEY = re.compile(r"token|authorization|passw(or)?d|secret|credential|api[-_]?key", re.IGNORECASE)
_SAFE_KEY_SUFFIX = re.compile(r"(_path|_file|_names?|_count|Path|File|Names?|Count)$")
# Secrets that need no registering: the password of a URL's user-info and secret-named query parameters.
_URL_PASSWORD = re.compile(r"(?<=://)([^\s/?#@:]*):[^\s/?#@]+@")
_SECRET_QUERY = re.compile(
    r"([?&;](?:[\w.-]*(?:token|passw(?:or)?d|secret|api[-_]?key|apikey|signature|sig|credential)[\w.-]*)=)[^&#\s\"']+",
    re.IGNORECASE,
)


class _Secrets:
    """Registered secret values and one regex matching any of them (longest first, so no partial leaks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self.pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        with self._lock:
            if value in self._values:
                return
            self._values.add(value)
            ordered = sorted(self._values, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def remove(self, value: str) -> None:
        with self._lock:
            if value not in self._values:
                return
            self._values.discard(value)
            ordered = sorted(self._values, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def scrub(self, text: str) -> str:
        pattern = self.pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        if "://" in text or "=" in text:
            text = _SECRET_QUERY.sub(rf"\1{REDACTED}", _URL_PASSWORD.sub(rf"\1:{REDACTED}@", text))
        return text


_SECRETS = _Secrets()
_handler: logging.Handler | None = None


def register_secret(value: str) -> None:
    """Make every later log line show [REDACTED] instead of `value`; very short values are ignored."""
    value = value.strip()
    if len(value) >= _MIN_SECRET_LEN:
        _SECRETS.add(value)


def forget_secret(value: str) -> None:
    """Stop redacting `value` (a per-job credential once its job is done), keeping the pattern small."""
    _SECRETS.remove(value.strip())


def _is_sensitive_key(key: object) -> bool:
    return isinstance(key, str) and bool(_SENSITIVE_KEY.search(key)) and not _SAFE_KEY_SUFFIX.search(key)


def _scrub(value: Any) -> Any:
    if isinstance(value, SafeArg):
        return SafeArg(_scrub(value.value))
    if isinstance(value, str):
        return _SECRETS.scrub(value)
    if isinstance(value, BaseException):
        return _SECRETS.scrub(f"{type(value).__name__}: {value}")
    if isinstance(value, dict):
        return {k: REDACTED if _is_sensitive_key(k) and v is not None else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    return value


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: hide registered secrets anywhere in values, and values of secret-named keys.

    `exc_info` is left for the console renderer to format; its output is scrubbed after rendering.
    """
    exc_info = event_dict.pop("exc_info", None)
    scrubbed = cast(EventDict, _scrub(event_dict))
    if exc_info is not None:
        scrubbed["exc_info"] = exc_info
    return scrubbed


def _unwrap_safe(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Outside SLS a `safe(...)` value is just its value."""
    return {k: unwrap(v) for k, v in event_dict.items()}


class _ScrubRendered:
    """Wraps a renderer so text produced while rendering (tracebacks, reprs) is scrubbed too."""

    def __init__(self, renderer: Callable[[WrappedLogger, str, EventDict], str | bytes]) -> None:
        self._renderer = renderer

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        out = self._renderer(logger, method, event_dict)
        return _SECRETS.scrub(out.decode() if isinstance(out, bytes) else out)


class _CurrentStdoutHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stdout` is at emit time, so replacing stdout (pytest capture) is harmless."""

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _normalise_level(level: str) -> str:
    name = level.strip().upper()
    name = "WARNING" if name == "WARN" else name
    if name not in _LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(sorted(_LEVELS))}")
    return name


def parse_log_format(value: str) -> LogFormat:
    """`CONNECTOR_LOG_FORMAT`'s value, or a ValueError naming the choices."""
    name = value.strip().lower()
    if name not in LOG_FORMATS:
        raise ValueError(f"log format {value!r} is not one of {', '.join(LOG_FORMATS)}")
    return cast(LogFormat, name)


def configure_logging(format: LogFormat = "auto", level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Install the structlog chain and one root handler; calling it again replaces the previous setup."""
    global _handler
    level_name = _normalise_level(level)
    format = parse_log_format(format)
    out = stream if stream is not None else sys.stdout
    is_tty = bool(getattr(out, "isatty", lambda: False)())
    use_console = format == "console" or (format == "auto" and is_tty)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if format == "sls":
        final: list[Processor] = [structlog.processors.format_exc_info, redact]
        renderer = render_sls
    elif use_console:
        final = [redact, _unwrap_safe]
        # Plain tracebacks: rich ones print source lines and locals, which can hold secrets split across a box.
        renderer = structlog.dev.ConsoleRenderer(colors=is_tty, exception_formatter=structlog.dev.plain_traceback)
    else:
        final = [structlog.processors.format_exc_info, redact, _unwrap_safe]
        renderer = structlog.processors.JSONRenderer()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *final,
            _ScrubRendered(renderer),
        ],
    )
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _CurrentStdoutHandler()
    handler.setFormatter(formatter)

    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(level_name)
    _handler = handler

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a cached logger keeps the processors of its first use, so structlog's capture_logs (and
        # a later configure_logging) would miss every module-level logger already used. Logging is per batch,
        # never per record, so the lookup costs nothing measurable.
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None, **bound: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger; lazy, so module-level loggers pick up a later `configure_logging`."""
    args: tuple[str, ...] = (name,) if name is not None else ()
    return cast(structlog.stdlib.BoundLogger, structlog.get_logger(*args, **bound))


def bind_context(**values: Any) -> None:
    """Add key/values to every later log line of the current task (e.g. connector name, job)."""
    structlog.contextvars.bind_contextvars(**values)
