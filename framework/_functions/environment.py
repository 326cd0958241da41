"""The variables Foundry sets for a function-mode module, read once and checked with one line per problem."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .._errors import ConfigError

#: Any of these marks a function-mode container (Foundry sets all of them).
FUNCTION_MODE_VARS = ("GET_JOB_URI", "POST_RESULT_URI", "POST_SCHEMA_URI", "RESTART_NOTIFICATION_URI")
_REQUIRED = (*FUNCTION_MODE_VARS, "RUNTIME_HOST", "RUNTIME_PORT", "MODULE_AUTH_TOKEN")
_CA = "CONNECTIONS_TO_OTHER_PODS_CA_PATH"


def is_function_mode(environ: Mapping[str, str]) -> bool:
    return any(environ.get(name) for name in FUNCTION_MODE_VARS)


def _number(environ: Mapping[str, str], name: str, default: float, *, low: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < low:
        raise ConfigError(f"{name}={raw!r} must be at least {low:g}")
    return value


@dataclass(frozen=True)
class FunctionEnvironment:
    """Where the compute-module service is and how to talk to it.

    Like Palantir's own client, calls go to `https://RUNTIME_HOST:RUNTIME_PORT` plus the path of each URI.
    """

    base_url: str
    get_job_path: str
    post_result_path: str
    post_schema_path: str
    restart_path: str
    token_path: Path
    ca_path: Path | None
    max_concurrent_tasks: int
    shutdown_timeout_s: float
    max_result_bytes: int
    environ: Mapping[str, str]

    @classmethod
    def load(cls, environ: Mapping[str, str], *, shutdown_timeout_s: float = 20) -> FunctionEnvironment:
        missing = [name for name in _REQUIRED if not environ.get(name, "").strip()]
        if missing:
            raise ConfigError(
                f"function mode needs {', '.join(missing)}: Foundry sets them for a function-mode compute module "
                "(locally, take them from the `environment` of the fake's runtime-creation answer)"
            )
        port = environ["RUNTIME_PORT"].strip()
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"RUNTIME_PORT={port!r} is not a port number")
        token_path = Path(environ["MODULE_AUTH_TOKEN"])
        if not token_path.is_file():
            raise ConfigError(f"MODULE_AUTH_TOKEN={str(token_path)!r} is not a file: it must name the token file")
        ca = environ.get(_CA, "").strip()
        if ca and not Path(ca).is_file():
            raise ConfigError(f"{_CA}={ca!r} is not a file: it must name the CA bundle (PEM) of the runtime service")
        return cls(
            base_url=f"https://{environ['RUNTIME_HOST'].strip()}:{port}",
            get_job_path=urlsplit(environ["GET_JOB_URI"]).path,
            post_result_path=urlsplit(environ["POST_RESULT_URI"]).path.rstrip("/"),
            post_schema_path=urlsplit(environ["POST_SCHEMA_URI"]).path,
            restart_path=urlsplit(environ["RESTART_NOTIFICATION_URI"]).path,
            token_path=token_path,
            ca_path=Path(ca) if ca else None,
            max_concurrent_tasks=int(_number(environ, "MAX_CONCURRENT_TASKS", 1, low=1)),
            shutdown_timeout_s=shutdown_timeout_s,
            max_result_bytes=int(_number(environ, "CONNECTOR_MAX_RESULT_BYTES", 64 << 20, low=1)),
            environ=dict(environ),
        )

    def read_token(self) -> str:
        try:
            token = self.token_path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"MODULE_AUTH_TOKEN={str(self.token_path)!r} cannot be read: {exc.strerror}") from exc
        if not token:
            raise ConfigError(f"MODULE_AUTH_TOKEN={str(self.token_path)!r} is empty")
        return token

    def ssl_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=str(self.ca_path) if self.ca_path else None)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"{_CA}={str(self.ca_path)!r} is not a PEM CA bundle: {exc}") from exc
