"""`FunctionModule` and `@function`: typed functions a function-mode compute module serves.

A function is an `async def` (or a plain `def`, run in a thread) method taking an optional `ctx: JobContext`
and then either one pydantic model (the query is that model) or named parameters (the query is an object
with those keys). Its return annotation is the result's type; `AsyncIterator[T]` (or `Iterator[T]`) streams
one JSON value per element. Everything is inferred and checked when the class is defined, so a module that
Foundry cannot describe fails at import with one line, not at its first job.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, overload

from pydantic import BaseModel, TypeAdapter, create_model
from structlog.stdlib import BoundLogger

from .._errors import ConfigError
from .._logging import get_logger
from .spec import function_spec, stream_element

_F = TypeVar("_F", bound=Callable[..., Any])
_MARK = "__foundry_function__"
_CONTEXT_NAMES = ("ctx", "context")


@dataclass(frozen=True)
class JobContext:
    """What a function knows about the job it runs: ids, the caller's credentials, a logger bound to the job.

    `authorization` (the caller's `Authorization` header) and `temporary_credentials` (a token for calls back
    into Foundry) are secrets: they are redacted from every log line while the job runs and never printed.
    """

    job_id: str
    query_type: str
    user_id: str | None
    log: BoundLogger
    authorization: str | None = field(default=None, repr=False)
    temporary_credentials: str | None = field(default=None, repr=False)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class FunctionDef:
    """One registered function: how to parse its query, call it and encode its result."""

    name: str
    method: str
    query: type[BaseModel]
    unpack: bool  # call with the query's fields as keyword arguments, not the model itself
    takes_context: bool
    is_async: bool
    streaming: bool
    result: TypeAdapter[Any]
    spec: dict[str, Any]

    def parse(self, query: Any) -> BaseModel:
        """The query as its model; raises pydantic's ValidationError naming the field."""
        return self.query.model_validate({} if query is None else query)

    def encode(self, value: Any) -> bytes:
        """One result value as JSON, checked against the return annotation."""
        return self.result.dump_json(self.result.validate_python(value))

    def call(self, module: Any, ctx: JobContext, query: BaseModel) -> Any:
        bound = getattr(module, self.method)
        args: tuple[Any, ...] = (ctx,) if self.takes_context else ()
        if self.unpack:
            return bound(*args, **{name: getattr(query, name) for name in type(query).model_fields})
        return bound(*args, query)


@overload
def function(fn: _F, /) -> _F: ...
@overload
def function(*, name: str | None = None) -> Callable[[_F], _F]: ...
def function(fn: Any = None, /, *, name: str | None = None) -> Any:
    """Serve this method as a function named `name` (default: the method's name), the job's `queryType`."""

    def mark(method: _F) -> _F:
        setattr(method, _MARK, name or method.__name__)
        return method

    return mark(fn) if fn is not None else mark


def _describe(cls: type, method: str, fn: Callable[..., Any], name: str) -> FunctionDef:
    where = f"{cls.__name__}.{method}"
    hints = typing.get_type_hints(fn, include_extras=True)
    params = list(inspect.signature(fn).parameters.values())[1:]  # past self
    takes_context = bool(params) and (hints.get(params[0].name) is JobContext or params[0].name in _CONTEXT_NAMES)
    if takes_context:
        params = params[1:]
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.name not in hints:
            raise ConfigError(f"{where}: parameter {param.name!r} needs a type annotation and a name (no *args)")
    single = hints.get(params[0].name) if len(params) == 1 else None
    if isinstance(single, type) and issubclass(single, BaseModel):
        query, unpack = single, False
    else:
        fields: dict[str, Any] = {p.name: (hints[p.name], ... if p.default is p.empty else p.default) for p in params}
        query, unpack = create_model(f"{cls.__name__}_{name}_query", **fields), True
    returns = hints.get("return", Any)
    element = stream_element(returns)
    streaming = element is not None
    output = element if streaming else returns
    is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
    result = TypeAdapter(Any if output is None else output)
    spec = function_spec(name, query, Any if output is None else output, streaming=streaming, owner=cls.__name__)
    return FunctionDef(name, method, query, unpack, takes_context, is_async, streaming, result, spec)


class FunctionModule:
    """Base class of a function-mode compute module: subclass it and mark methods with `@function`.

    Lifecycle under `connector run package.module:Class`: the functions are described when the class is
    defined -> `setup()` -> schemas are posted and the restart reported -> up to `MAX_CONCURRENT_TASKS` jobs run
    at once, async functions on the event loop and plain `def`s in a thread pool -> on SIGTERM polling stops and
    running jobs finish within `CONNECTOR_SHUTDOWN_TIMEOUT_S` -> `teardown()` (also after a failure, once
    `setup()` returned).

    Guarantees: a job whose query type is unknown, whose query fails its model, whose function raises or whose
    result does not fit its annotation fails with a one-line message posted as its result; the module keeps
    serving. Results are posted again on 5xx and connection faults; a 401 re-reads the module token file.
    """

    #: Names the module in logs (default: the class name).
    name: ClassVar[str | None] = None
    _functions: ClassVar[dict[str, FunctionDef]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, FunctionDef] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                name = getattr(value, _MARK, None)
                if isinstance(name, str):
                    found = {k: v for k, v in found.items() if v.method != attr}
                    if name in found:
                        raise ConfigError(f"{cls.__name__}: two functions are named {name!r}")
                    found[name] = _describe(cls, attr, value, name)
        cls._functions = found

    def __init__(self, environ: Mapping[str, str] | None = None, log: BoundLogger | None = None) -> None:
        self.environ: Mapping[str, str] = dict(environ or {})
        self.log: BoundLogger = log or get_logger("function_module", connector=self.module_name)

    @property
    def module_name(self) -> str:
        return self.name or type(self).__name__

    @classmethod
    def functions(cls) -> dict[str, FunctionDef]:
        """Every served function by name (its `queryType`)."""
        return dict(cls._functions)

    @classmethod
    def specs(cls) -> list[dict[str, Any]]:
        """The FunctionSpecs posted to Foundry at start-up."""
        return [f.spec for f in cls._functions.values()]

    async def setup(self) -> None:
        """Runs once before the first job is polled; open clients here."""

    async def teardown(self) -> None:
        """Runs once after the last job finished (after a failure too, once `setup()` returned)."""


async def iterate(value: Any) -> AsyncIterator[Any]:
    """A streaming function's elements, whether it returned an async or a sync iterable (drawn in a thread)."""
    if hasattr(value, "__aiter__"):
        async for item in value:
            yield item
        return
    iterator = iter(value)
    done = object()
    while (item := await asyncio.to_thread(next, iterator, done)) is not done:
        yield item
