"""`package.module:ClassName` -> the class to run, or ONE line saying what is wrong (never a traceback).

What the user got wrong here is nearly always their own code or their command line: a typo in the class
name, a syntax error, an import that fails. Each is a `ConfigError` (exit code 2) naming the file and line,
or the classes the module does define.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from types import ModuleType

from ._connector import Connector
from ._errors import ConfigError
from ._functions import FunctionModule

Runnable = type[Connector] | type[FunctionModule]


def load_connector_class(spec: str) -> Runnable:
    """Import the module (the current directory first on sys.path, as `python -m` has it) and find the class."""
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name:
        raise ConfigError(f"connector {spec!r} is not of the form package.module:ClassName")
    module = _import(module_name, spec)
    cls = getattr(module, class_name, None)
    if cls is None:
        found = ", ".join(_runnables(module)) or "no Connector or FunctionModule subclass"
        raise ConfigError(f"{module_name} has no class {class_name!r} (it defines {found}); fix the name in {spec!r}")
    if not (isinstance(cls, type) and issubclass(cls, Connector | FunctionModule)):
        raise ConfigError(
            f"{spec!r} is not a Connector or FunctionModule subclass (found {type(cls).__name__} in {module_name})"
        )
    return cls


def _import(module_name: str, spec: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # `connector run mypkg:MyConnector` from the project folder finds mypkg
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"cannot import module {module_name!r} for connector {spec!r}: {exc}") from None
    except SyntaxError as exc:
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else module_name
        raise ConfigError(f"syntax error in {where}: {exc.msg}; fix it, then run again") from None
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise ConfigError(
            f"importing {module_name} failed at {frame.filename}:{frame.lineno}: {type(exc).__name__}: {exc}"
        ) from None


def _runnables(module: ModuleType) -> list[str]:
    return sorted(
        name
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, Connector | FunctionModule)
        and value not in (Connector, FunctionModule)
    )
