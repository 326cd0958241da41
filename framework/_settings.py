"""The pipeline-mode environment Foundry gives a compute module (foundry-api.md section 1), validated up front.

Every problem becomes a one-line `ConfigError` naming the variable or file and saying what to do, because
the person reading it is looking at a container log, not a debugger. Secret values never reach a message.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError

from ._config_files import existing_file, one_line, read_json, read_text
from ._errors import ConfigError
from ._logging import LogFormat, _normalise_level
from ._sources import (
    HttpConnectionConfig,
    SourceConfiguration,
    SourceCredentials,
    load_source_configurations,
    load_source_credentials,
)

__all__ = [
    "DEFAULT_BRANCH",
    "Environment",
    "HttpConnectionConfig",
    "ResourceRef",
    "RuntimeSettings",
    "SourceConfiguration",
    "SourceCredentials",
    "load_environment",
    "load_settings",
]

DEFAULT_BRANCH = "master"

# --------------------------------------------------------------------------------------------------- env reading

S = TypeVar("S", bound=BaseSettings)


def load_settings(model: type[S], environ: Mapping[str, str] | None = None) -> S:
    """`model` (a pydantic-settings class) read from `environ` only; os.environ when `environ` is None.

    The one way settings are read, the framework's and a connector's alike (`Connector.settings_model` is
    loaded with `env.environ`), so a test passes a mapping instead of patching os.environ. A bad value is a
    one-line `ConfigError` naming the variable, which the runtime turns into exit code 2.
    """
    source = EnvSettingsSource(model)
    if environ is not None:
        source.env_vars = {
            (k if source.case_sensitive else k.lower()): v
            for k, v in environ.items()
            if not (source.env_ignore_empty and v == "")
        }
    prefix = str(model.model_config.get("env_prefix") or "")
    try:
        return model(_build_sources=((source,), {}))  # this source alone: no os.environ, no .env file
    except SettingsError as exc:
        raise ConfigError(f"{prefix}* settings are invalid: {one_line(str(exc))}; fix them or unset them") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        fallback = f"{prefix}* settings" if prefix else model.__name__
        name = f"{prefix}{err['loc'][0]}".upper() if err["loc"] else fallback
        reason = one_line(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{name}={err.get('input')!r} is invalid: {reason}; fix it or unset it") from None


class _RawEnv(BaseSettings):
    """The variables Foundry sets, unparsed; empty counts as unset."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", env_ignore_empty=True)

    build2_token: str | None = None
    resource_alias_map: str | None = None
    foundry_service_discovery_v2: str | None = None
    foundry_url: str | None = None
    foundry_hostname: str | None = None
    default_ca_path: str | None = None
    source_credentials: str | None = None
    source_configurations_path: str | None = None


class RuntimeSettings(BaseSettings):
    """Framework tuning from CONNECTOR_* variables; every one optional."""

    model_config = SettingsConfigDict(env_prefix="CONNECTOR_", extra="ignore", env_ignore_empty=True)

    publish_batch_size: int = Field(500, ge=1, le=100_000)
    publish_linger_ms: float = Field(20, ge=0)
    read_batch_size: int = Field(500, ge=1, le=1000)
    max_in_flight_batches: int = Field(4, ge=1)
    read_mode: Literal["subscriber", "earliest", "latest"] = "subscriber"
    subscriber_id: str | None = Field(None, min_length=1)
    poll_interval_ms: float = Field(250, gt=0)
    log_format: LogFormat = "auto"
    log_level: str = "INFO"
    progress_interval_s: float = Field(30, gt=0)
    shutdown_timeout_s: float = Field(20, gt=0)
    http_timeout_s: float = Field(60, gt=0)
    retry_max_attempts: int = Field(8, ge=1)
    retry_initial_backoff_s: float = Field(0.2, ge=0)
    retry_max_backoff_s: float = Field(10, ge=0)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        return _normalise_level(value)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> RuntimeSettings:
        """Read CONNECTOR_* from `environ` (default os.environ); a bad value is a ConfigError naming it."""
        return load_settings(cls, environ)

    @classmethod
    def load_or_defaults(cls, environ: Mapping[str, str]) -> tuple[RuntimeSettings, ConfigError | None]:
        """Settings with every invalid CONNECTOR_* variable at its default, and the first error (None: valid).

        Logging must come up before the environment is validated (so validation errors are logged too), from
        the same parse: a bad CONNECTOR_LOG_FORMAT then logs with the default format, a bad other variable
        does not lose a valid CONNECTOR_LOG_LEVEL.
        """
        try:
            return cls.load(environ), None
        except ConfigError as first:
            kept = dict(environ)
            while True:
                try:
                    return cls.load(kept), first
                except ConfigError as exc:
                    name = str(exc).partition("=")[0]
                    if name not in kept:
                        return cls.load({}), first
                    del kept[name]


def _where(err: ErrorDetails) -> str:
    return ".".join(str(p) for p in err["loc"][1:])


# --------------------------------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class ResourceRef:
    rid: str
    branch: str = DEFAULT_BRANCH


class _AliasEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")
    rid: str = Field(min_length=1)
    branch: str | None = None


_ALIAS_SHAPE = '{"alias": {"rid": ..., "branch": ...}}'
_ALIAS_MAP = TypeAdapter(dict[str, _AliasEntry])


def _load_aliases(path: Path) -> dict[str, ResourceRef]:
    data = read_json("RESOURCE_ALIAS_MAP", path, _ALIAS_SHAPE)
    try:
        entries = _ALIAS_MAP.validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = f"in RESOURCE_ALIAS_MAP file {path}"
        if not err["loc"]:
            raise ConfigError(f"RESOURCE_ALIAS_MAP file {path} is not a JSON object: expected {_ALIAS_SHAPE}") from None
        alias, field = err["loc"][0], _where(err)
        if not field:
            msg = f"alias map entry {alias!r} is not an object {where}: expected {_ALIAS_SHAPE}"
        elif err["type"] == "missing":
            msg = f'alias map entry {alias!r} has no "{field}" {where}: expected {_ALIAS_SHAPE}'
        else:
            msg = f'alias map entry {alias!r} has an invalid "{field}" {where}: {one_line(err["msg"])}'
        raise ConfigError(msg) from None
    return {alias: ResourceRef(e.rid, e.branch or DEFAULT_BRANCH) for alias, e in entries.items()}


# --------------------------------------------------------------------------------------------------- addresses

_HOST_LABEL = r"[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")


def _base_url(var: str, raw: str) -> str:
    """`host`, `host:port` or an http(s) URL, as `scheme://netloc/path` without a trailing slash."""
    value = raw.strip()
    bad = ConfigError(
        f"{var} {raw!r} is not a host, host:port or http(s) URL: use e.g. foundry.example.com or http://127.0.0.1:8080"
    )
    parts = urlsplit(value if "://" in value else f"https://{value}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{var} must not contain credentials: the job token comes from BUILD2_TOKEN")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise bad
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise bad from None
    if ":" in parts.hostname:
        try:
            ipaddress.IPv6Address(parts.hostname)
        except ValueError:
            raise bad from None
    elif not _HOSTNAME.fullmatch(parts.hostname):
        raise bad
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _with_api_suffix(url: str) -> str:
    return url if url.endswith("/api") else f"{url}/api"


def _first_uri(value: Any) -> str | None:
    """Discovery values are `[uri, ...]`, `{uris: [...]}` or a bare string."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    if isinstance(value, dict):
        return _first_uri(value.get("uris"))
    return None


def _discovered_bases(path: Path) -> tuple[str, str]:
    var = "FOUNDRY_SERVICE_DISCOVERY_V2"
    shape = "expected `api_gateway: [https://host/api]` and `stream_proxy: [https://host/stream-proxy/api]`"
    try:
        data = yaml.safe_load(read_text(var, path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{var} file {path} is not valid YAML{line}: {shape}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{var} file {path} is not a YAML mapping: {shape}")
    services = {str(k).lower().replace("-", "_"): v for k, v in data.items()}
    if "api_gateway" not in services:
        raise ConfigError(f"{var} file {path} has no api_gateway entry: {shape}")
    uris: dict[str, str] = {}
    for name in ("api_gateway", "stream_proxy"):
        if name not in services:
            continue
        uri = _first_uri(services[name])
        if uri is None:
            raise ConfigError(f"{var} file {path} entry {name} has no URL: {shape}")
        uris[name] = _with_api_suffix(_base_url(f"{var} {name}", uri))
    api = uris["api_gateway"]
    return api, uris.get("stream_proxy", api)


def _bases_from_url(var: str, raw: str) -> tuple[str, str]:
    """A plain host serves every v2 path, highScale ones included, under /api (as the official SDK assumes)."""
    api = f"{_base_url(var, raw).removesuffix('/api')}/api"
    return api, api


# --------------------------------------------------------------------------------------------------- environment


@dataclass
class Environment:
    """A validated pipeline environment; files that can change (token, sources) are read on demand."""

    token_path: Path
    alias_map_path: Path
    aliases: dict[str, ResourceRef]
    api_base: str
    stream_proxy_base: str
    ca_path: Path | None
    runtime: RuntimeSettings
    source_credentials_path: Path | None = None
    source_configurations_path: Path | None = None
    #: The variables this environment was loaded from: what `load_settings` reads a connector's settings from.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    def read_token(self) -> str:
        """Read the token file now: Foundry may rotate it, so callers re-read after a 401."""
        token = read_text("BUILD2_TOKEN", self.token_path).strip()
        if not token:
            raise ConfigError(f"BUILD2_TOKEN file {self.token_path} is empty: it must hold the job token")
        return token

    def ref(self, alias: str) -> ResourceRef:
        try:
            return self.aliases[alias]
        except KeyError:
            declared = ", ".join(sorted(self.aliases)) or "(none)"
            raise ConfigError(
                f"alias {alias!r} is not in RESOURCE_ALIAS_MAP ({self.alias_map_path}); declared aliases: "
                f"{declared}; add it to the job's inputs/outputs"
            ) from None

    def ssl_context(self) -> ssl.SSLContext | None:
        """System CAs plus DEFAULT_CA_PATH (Foundry's in-cluster CA); None means aiohttp's default."""
        if self.ca_path is None:
            return None
        ctx = ssl.create_default_context()
        try:
            ctx.load_verify_locations(cafile=str(self.ca_path))
        except (ssl.SSLError, OSError):
            raise ConfigError(f"DEFAULT_CA_PATH {self.ca_path} is not a readable PEM CA bundle") from None
        return ctx

    def source_credentials(self) -> SourceCredentials:
        """Parse SOURCE_CREDENTIALS now; registers every value with the log redactor."""
        var = "SOURCE_CREDENTIALS"
        return load_source_credentials(self._source_file(var, self.source_credentials_path), var)

    def source_configurations(self) -> dict[str, SourceConfiguration]:
        """Parse SOURCE_CONFIGURATIONS_PATH now; registers every secret with the log redactor."""
        var = "SOURCE_CONFIGURATIONS_PATH"
        return load_source_configurations(self._source_file(var, self.source_configurations_path), var)

    @staticmethod
    def _source_file(var: str, path: Path | None) -> Path:
        if path is None:
            raise ConfigError(f"{var} is not set: add an external source to the compute module so Foundry sets it")
        return existing_file(var, str(path), "Foundry mounts it when the compute module has an external source")


def load_environment(
    environ: Mapping[str, str] | None = None, *, runtime: RuntimeSettings | None = None
) -> Environment:
    """Validate everything a pipeline-mode connector needs before it touches the network.

    `runtime`: CONNECTOR_* settings already read from the same `environ` (the runtime reads them first, for
    logging); read here when not given.
    """
    environ = dict(os.environ if environ is None else environ)
    raw = load_settings(_RawEnv, environ)
    runtime = RuntimeSettings.load(environ) if runtime is None else runtime

    if raw.build2_token is None:
        raise ConfigError(
            "BUILD2_TOKEN is not set: set it to the path of the job token file (Foundry sets it in pipeline mode)"
        )
    token_path = existing_file("BUILD2_TOKEN", raw.build2_token, "it must be the path of the job token file")

    if raw.resource_alias_map is None:
        raise ConfigError(
            "RESOURCE_ALIAS_MAP is not set: set it to the path of the alias map JSON file "
            "(Foundry sets it in pipeline mode)"
        )
    alias_map_path = existing_file(
        "RESOURCE_ALIAS_MAP", raw.resource_alias_map, f"it must be the path of a JSON file {_ALIAS_SHAPE}"
    )
    aliases = _load_aliases(alias_map_path)

    if raw.foundry_service_discovery_v2 is not None:
        discovery = existing_file(
            "FOUNDRY_SERVICE_DISCOVERY_V2",
            raw.foundry_service_discovery_v2,
            "it must be the path of the service discovery YAML file, or unset it and set FOUNDRY_URL",
        )
        api_base, stream_proxy_base = _discovered_bases(discovery)
    elif raw.foundry_url is not None:
        api_base, stream_proxy_base = _bases_from_url("FOUNDRY_URL", raw.foundry_url)
    elif raw.foundry_hostname is not None:
        api_base, stream_proxy_base = _bases_from_url("FOUNDRY_HOSTNAME", raw.foundry_hostname)
    else:
        raise ConfigError("no Foundry address: set FOUNDRY_SERVICE_DISCOVERY_V2 or FOUNDRY_URL")

    ca_path = None
    if raw.default_ca_path is not None:
        ca_path = existing_file("DEFAULT_CA_PATH", raw.default_ca_path, "it must be the path of a PEM CA bundle")

    env = Environment(
        token_path=token_path,
        alias_map_path=alias_map_path,
        aliases=aliases,
        api_base=api_base,
        stream_proxy_base=stream_proxy_base,
        ca_path=ca_path,
        runtime=runtime,
        source_credentials_path=Path(raw.source_credentials) if raw.source_credentials else None,
        source_configurations_path=(Path(raw.source_configurations_path) if raw.source_configurations_path else None),
        environ=environ,
    )
    env.read_token()  # fail now on an empty or unreadable token file, not at the first request
    return env
