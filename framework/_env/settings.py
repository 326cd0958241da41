"""Settings read from environment variables: `load_settings` (the one way), and the framework's CONNECTOR_*."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError

from .._errors import ConfigError
from .._logging import LogFormat, _normalise_level
from .files import one_line

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
        values = source()
        # BaseModel's own __init__ validates `values` and defaults only; BaseSettings.__init__ would merge
        # its default sources again (os.environ, a .env file) under them.
        settings = model.__new__(model)
        BaseModel.__init__(settings, **values)
        return settings
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

    publish_batch_size: int = Field(1000, ge=1, le=100_000)
    publish_linger_ms: float = Field(5, ge=0)
    read_batch_size: int = Field(1000, ge=1, le=1000)
    max_in_flight_batches: int = Field(4, ge=1)
    read_mode: Literal["subscriber", "earliest", "latest"] = "subscriber"
    subscriber_id: str | None = Field(None, min_length=1)
    poll_interval_ms: float = Field(250, gt=0)
    log_format: LogFormat = "auto"
    log_level: Annotated[str, AfterValidator(_normalise_level)] = "INFO"  # WARN -> WARNING; unknown: an error
    progress_interval_s: float = Field(30, gt=0)
    shutdown_timeout_s: float = Field(20, gt=0)
    http_timeout_s: float = Field(60, gt=0)
    # None: the command's default (`connector run` 0 = retry without limit, `connector check` 3).
    retry_max_attempts: int | None = Field(None, ge=0)
    retry_initial_backoff_s: float = Field(0.2, ge=0)
    retry_max_backoff_s: float = Field(10, ge=0)
    # What an exception raised by a transform does: stop the connector (the default) or dead-letter the input.
    on_transform_error: Literal["stop", "dead_letter"] = "stop"
    # `connector run` serves /live, /ready and /metrics on this port when set (not a privileged one).
    http_port: int | None = Field(None, ge=1024, le=65535)
    outage_report_s: float = Field(120, gt=0)  # "Foundry still unavailable for 2m" every this many seconds
    # `connector run` starts this many worker processes that split the stream inputs' partitions (`_workers`).
    workers: int = Field(1, ge=1, le=64)
    # Set by the parent for each worker: it reads the partitions p with p % CONNECTOR_WORKERS == this.
    worker_index: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _index_below_workers(self) -> RuntimeSettings:
        if self.worker_index is not None and self.worker_index >= self.workers:
            raise ValueError(f"worker_index {self.worker_index} must be below workers {self.workers}")
        return self

    def owns(self, partition: str | int) -> bool:
        """Whether this process reads `partition` (always, unless it is one of several workers)."""
        return self.worker_index is None or int(partition) % self.workers == self.worker_index

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
