"""Reading the files the environment points at, with one-line `ConfigError`s that never quote file content."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._errors import ConfigError


def one_line(text: str) -> str:
    return " ".join(text.split())


def existing_file(var: str, value: str, hint: str) -> Path:
    path = Path(value).expanduser()
    if not path.exists():
        raise ConfigError(f"{var} {path} does not exist: {hint}")
    if not path.is_file():
        raise ConfigError(f"{var} {path} is not a file: {hint}")
    return path


def read_text(var: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{var} file {path} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{var} file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{var} file {path} cannot be read ({exc.strerror}): check its permissions") from None


def read_json(var: str, path: Path, expected: str) -> Any:
    """Parsed JSON; the error gives the line but not the text (the file may hold secrets)."""
    text = read_text(var, path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{var} file {path} is not valid JSON (line {exc.lineno}): expected {expected}") from None
