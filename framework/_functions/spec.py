"""Function schemas in the FunctionSpec shape Foundry and Palantir's `foundry-compute-modules` client post.

`{"functionName", "inputs": [{"name", "required", "constraints": [], "dataType"}], "output": {"type": "single",
"single": {"dataType"}}, "ontologyProvenance": null}`, with data types such as `{"type": "integer", "integer": {}}`,
`{"type": "list", "list": {"elementsType": ...}}`, `{"type": "optionalType", "optionalType": {"wrappedType": ...}}`
and `{"type": "anonymousCustomType", "anonymousCustomType": {"fields": {...}}}` for models.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import decimal
import types
import typing
from typing import Any

from pydantic import BaseModel

from .._errors import ConfigError

DataType = dict[str, Any]

# Foundry's function data type of each Python type (bool and datetime are int and date subclasses: checked first).
_PRIMITIVES: tuple[tuple[Any, str], ...] = (
    (bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"), (bytes, "binary"),
    (datetime.datetime, "timestamp"), (datetime.date, "date"), (decimal.Decimal, "decimal"),
)  # fmt: skip
_LISTS = (list, tuple, collections.abc.Sequence, collections.abc.Iterable, collections.abc.Iterator)
_STREAMS = (collections.abc.AsyncIterator, collections.abc.AsyncIterable, collections.abc.AsyncGenerator)
_STREAMS_SYNC = (collections.abc.Iterator, collections.abc.Generator)


def _tagged(kind: str, body: dict[str, Any] | None = None) -> DataType:
    return {"type": kind, kind: body or {}}


def data_type(hint: Any, *, where: str) -> DataType:
    """The Foundry data type of a Python annotation; a ConfigError naming `where` for one it cannot map."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return data_type(args[0], where=where)
    if origin in (typing.Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        if len(present) == 1 and len(args) == 2:
            return _tagged("optionalType", {"wrappedType": data_type(present[0], where=where)})
        raise ConfigError(f"{where}: only `X | None` unions can be described to Foundry, not {hint!r}")
    if origin in _LISTS or hint in (list, tuple):
        element = args[0] if args else Any
        return _tagged("list", {"elementsType": data_type(element, where=where)})
    if origin in (set, frozenset, collections.abc.Set) or hint in (set, frozenset):
        return _tagged("set", {"elementsType": data_type(args[0] if args else Any, where=where)})
    if origin in (dict, collections.abc.Mapping) or hint is dict:
        if len(args) != 2:
            raise ConfigError(f"{where}: give a dict its key and value types (dict[str, int])")
        keys, values = (data_type(a, where=where) for a in args)
        return _tagged("map", {"keysType": keys, "valuesType": values})
    if hint is Any or hint is object:
        return _tagged("string")  # what Foundry's UI accepts for a value it cannot type
    for python, name in _PRIMITIVES:
        if hint is python:
            return _tagged(name)
    fields = _fields(hint)
    if fields is None:
        shown = getattr(hint, "__name__", repr(hint))
        raise ConfigError(f"{where}: {shown} has no Foundry data type; use a pydantic model or a plain type")
    described = {name: data_type(field, where=f"{where}.{name}") for name, field in fields.items()}
    return _tagged("anonymousCustomType", {"fields": described})


def _fields(hint: Any) -> dict[str, Any] | None:
    """Field annotations of a pydantic model, dataclass or TypedDict; None for anything else."""
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return {name: field.annotation for name, field in hint.model_fields.items()}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return typing.get_type_hints(hint)
    if isinstance(hint, type) and typing.is_typeddict(hint):
        return typing.get_type_hints(hint)
    return None


def stream_element(hint: Any) -> Any | None:
    """For `AsyncIterator[T]` (or a sync Iterator / generator) return annotations: T; else None."""
    origin = typing.get_origin(hint)
    if origin in _STREAMS or origin in _STREAMS_SYNC:
        args = typing.get_args(hint)
        return args[0] if args else Any
    return None


def function_spec(
    name: str, model: type[BaseModel], output: Any, *, streaming: bool, owner: str = ""
) -> dict[str, Any]:
    """The FunctionSpec of one function whose query validates against `model` and which returns `output`."""
    where = f"{owner}.{name}" if owner else name
    inputs = [
        {
            "name": field_name,
            "required": field.is_required(),
            "constraints": [],
            "dataType": data_type(field.annotation, where=f"{where}({field_name})"),
        }
        for field_name, field in model.model_fields.items()
    ]
    element = data_type(output, where=f"{where} -> return")
    if streaming:
        element = _tagged("list", {"elementsType": element})
    return {
        "functionName": name,
        "inputs": inputs,
        "output": {"type": "single", "single": {"dataType": element}},
        "ontologyProvenance": None,
    }
