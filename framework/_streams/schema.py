"""Foundry stream schemas from pydantic models, so a stream and its connector's model cannot drift."""

from __future__ import annotations

import datetime as dt
import decimal
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from .._errors import ConfigError

_SCALARS: dict[type, str] = {
    bool: "boolean",  # before int: bool is an int subclass
    int: "long",
    float: "double",
    str: "string",
    bytes: "binary",
    dt.datetime: "timestamp",
    dt.date: "date",
}


def stream_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`{"fields": [{"name", "schema": {"nullable", "dataType"}}]}` for `model`."""
    return {"fields": [_field(name, f.annotation, model) for name, f in model.model_fields.items()]}


def _field(name: str, annotation: Any, owner: type[BaseModel]) -> dict[str, Any]:
    field_info = owner.model_fields[name]
    nullable, inner = _unwrap_optional(annotation)
    return {
        "name": field_info.alias or name,
        "schema": {"nullable": nullable or not field_info.is_required(), "dataType": _data_type(inner, name)},
    }


def _unwrap_optional(annotation: Any) -> tuple[bool, Any]:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return len(args) != len(get_args(annotation)), args[0]
    return False, annotation


def _data_type(annotation: Any, name: str) -> dict[str, Any]:
    origin = get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        nullable, item = _unwrap_optional(get_args(annotation)[0] if get_args(annotation) else Any)
        return {"type": "array", "itemsSchema": {"nullable": nullable, "dataType": _data_type(item, name)}}
    if origin is dict:
        key, value = get_args(annotation) or (str, Any)
        nullable, value = _unwrap_optional(value)
        return {
            "type": "map",
            "keySchema": {"nullable": False, "dataType": _data_type(key, name)},
            "valueSchema": {"nullable": nullable, "dataType": _data_type(value, name)},
        }
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return {"type": "struct", "subFields": stream_schema(annotation)["fields"]}
        if issubclass(annotation, decimal.Decimal):
            return {"type": "decimal", "precision": 38, "scale": 18}
        for python_type, foundry_type in _SCALARS.items():
            if issubclass(annotation, python_type):
                return {"type": foundry_type}
    raise ConfigError(f"field {name!r}: no Foundry stream type for {annotation!r}; use a scalar, list, dict or model")
