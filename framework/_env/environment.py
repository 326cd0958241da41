"""The pipeline-mode environment Foundry gives a compute module, validated up front.

Every problem becomes a one-line `ConfigError` naming the variable or file and saying what to do, because
the person reading it is looking at a container log, not a debugger. Secret values never reach a message.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from .._errors import ConfigError
from .addresses import bases_from_url, discovered_bases
from .files import existing_file, one_line, read_json, read_text
from .settings import RuntimeSettings, _RawEnv, load_settings
from .sources import (
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

# --------------------------------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class ResourceRef:
    rid: str
    branch: str = DEFAULT_BRANCH


class _AliasEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")
    rid: str = Field(min_length=1)
    branch: str | None = None


def _where(err: ErrorDetails) -> str:
    return ".".join(str(p) for p in err["loc"][1:])


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
        api_base, stream_proxy_base = discovered_bases(discovery)
    elif raw.foundry_url is not None:
        api_base, stream_proxy_base = bases_from_url("FOUNDRY_URL", raw.foundry_url)
    elif raw.foundry_hostname is not None:
        api_base, stream_proxy_base = bases_from_url("FOUNDRY_HOSTNAME", raw.foundry_hostname)
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
