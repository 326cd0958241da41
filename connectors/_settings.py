"""Connector-specific settings from environment variables, failing like the framework's own: one line, exit 2."""

from __future__ import annotations

from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from framework import ConfigError

S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S]) -> S:
    """`cls()` read from os.environ; a bad value becomes a ConfigError naming the variable, not a traceback."""
    try:
        return cls()
    except ValidationError as exc:
        err = exc.errors()[0]
        prefix = str(cls.model_config.get("env_prefix", ""))
        name = f"{prefix}{err['loc'][0]}".upper() if err["loc"] else cls.__name__
        reason = err["msg"].removeprefix("Value error, ").replace("\n", " ")
        raise ConfigError(f"{name}={err.get('input')!r} is invalid: {reason}; fix it or unset it") from None
