"""External-source secrets and configurations (SOURCE_CREDENTIALS, SOURCE_CONFIGURATIONS_PATH).

Every secret read here is registered with the log redactor at once, and errors name secrets, never show them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError

from .._errors import ConfigError
from .._logging import register_secret
from .files import one_line, read_json

_CREDENTIALS_SHAPE = '{"<source>": {"<secret name>": "value"}}'
_CONFIGURATIONS_SHAPE = '{"<source>": {"secrets": {...}, "httpConnectionConfig": {"url": ...}}}'


class SourceCredentials:
    """Secrets of the compute module's external sources; lookups fail with the secret NAMES, never values."""

    def __init__(self, data: Mapping[str, Mapping[str, str]], *, origin: str = "SOURCE_CREDENTIALS") -> None:
        self._data = {source: dict(secrets) for source, secrets in data.items()}
        self._origin = origin

    def get(self, source: str, secret: str) -> str:
        """`secret`, else `additionalSecret<Secret>` (REST sources prefix their secret names)."""
        if source not in self._data:
            available = ", ".join(sorted(self._data)) or "(none)"
            raise ConfigError(
                f"source {source!r} is not in {self._origin}; available sources: {available}; "
                "add the source to the compute module"
            )
        secrets = self._data[source]
        prefixed = f"additionalSecret{secret[:1].upper()}{secret[1:]}"
        for name in (secret, prefixed):
            if name in secrets:
                return secrets[name]
        names = ", ".join(sorted(secrets)) or "(none)"
        raise ConfigError(
            f"source {source!r} has no secret {secret!r} or {prefixed!r} in {self._origin}; "
            f"available secret names: {names}"
        )

    def sources(self) -> list[str]:
        return sorted(self._data)

    def values(self) -> list[str]:
        return [value for secrets in self._data.values() for value in secrets.values()]

    def __repr__(self) -> str:
        return f"SourceCredentials(sources={self.sources()!r}, values=[REDACTED])"


class HttpConnectionConfig(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    url: str
    auth_headers: dict[str, SecretStr] = Field(default_factory=dict, alias="authHeaders")
    query_parameters: dict[str, str] = Field(default_factory=dict, alias="queryParameters")


class SourceConfiguration(BaseModel):
    """One source of SOURCE_CONFIGURATIONS_PATH; keys we do not model are kept in `model_extra`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    http_connection_config: HttpConnectionConfig | None = Field(None, alias="httpConnectionConfig")
    proxy_token: SecretStr | None = Field(None, alias="proxyToken")
    server_certificates: dict[str, str] = Field(default_factory=dict, alias="serverCertificates")


_CREDENTIALS = TypeAdapter(dict[str, dict[str, str]])
_CONFIGURATIONS = TypeAdapter(dict[str, SourceConfiguration])


def load_source_credentials(path: Path, var: str = "SOURCE_CREDENTIALS") -> SourceCredentials:
    data = read_json(var, path, _CREDENTIALS_SHAPE)
    try:
        parsed = _CREDENTIALS.validate_python(data)
    except ValidationError as exc:
        where = " ".join(repr(str(p)) for p in exc.errors()[0]["loc"]) or "top level"
        raise ConfigError(f"{var} file {path} is malformed at {where}: expected {_CREDENTIALS_SHAPE}") from None
    creds = SourceCredentials(parsed, origin=f"{var} ({path})")
    for value in creds.values():
        register_secret(value)
    return creds


def load_source_configurations(path: Path, var: str = "SOURCE_CONFIGURATIONS_PATH") -> dict[str, SourceConfiguration]:
    data = read_json(var, path, _CONFIGURATIONS_SHAPE)
    try:
        parsed = _CONFIGURATIONS.validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:
            raise ConfigError(f"{var} file {path} is not a JSON object: expected {_CONFIGURATIONS_SHAPE}") from None
        source, field = err["loc"][0], ".".join(str(p) for p in err["loc"][1:]) or "entry"
        raise ConfigError(f"{var} file {path}: source {source!r} {field} is invalid: {one_line(err['msg'])}") from None
    for config in parsed.values():
        _register_secrets(config)
    return parsed


def _register_secrets(config: SourceConfiguration) -> None:
    secrets = list(config.secrets.values())
    if config.proxy_token is not None:
        secrets.append(config.proxy_token)
    if config.http_connection_config is not None:
        secrets.extend(config.http_connection_config.auth_headers.values())
    for secret in secrets:
        register_secret(secret.get_secret_value())
