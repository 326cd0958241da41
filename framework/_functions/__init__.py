"""Function mode: typed functions a compute module serves to Foundry (polled jobs, posted results)."""

from .environment import FunctionEnvironment, is_function_mode
from .module import FunctionDef, FunctionModule, JobContext, function
from .runner import serve_function_module

__all__ = [
    "FunctionDef",
    "FunctionEnvironment",
    "FunctionModule",
    "JobContext",
    "function",
    "is_function_mode",
    "serve_function_module",
]
