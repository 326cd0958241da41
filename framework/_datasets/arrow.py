"""Pydantic models to Arrow: one stable schema per model, so every Parquet file of a dataset agrees.

Inferring a schema from each batch of rows would drift (a column that is all null in one batch becomes
`null`-typed, ints that happen to be small stay int64 but floats written as `1` become ints...); deriving
it from the model's annotations gives the same schema on every write.

Mapping: int -> int64, float -> float64, str -> string, bool -> bool, bytes -> binary,
datetime -> timestamp[us, UTC], date -> date32, time -> time64[us], str/int Enum and Literal -> string/int64,
Optional[X] -> nullable X, list/tuple/set[X] -> list<X>, dict[str, X] -> map<string, X>, nested model -> struct.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import types
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pyarrow as pa
from pydantic import BaseModel, ValidationError

from .._errors import ConfigError, RecordValidationError, validation_message
from .._handles import as_model

_SCALARS: dict[Any, pa.DataType] = {
    bool: pa.bool_(),
    int: pa.int64(),
    float: pa.float64(),
    str: pa.string(),
    bytes: pa.binary(),
    dt.datetime: pa.timestamp("us", tz="UTC"),
    dt.date: pa.date32(),
    dt.time: pa.time64("us"),
}


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """`X | None` -> (X, True); anything else -> (annotation, False)."""
    if get_origin(annotation) is Annotated:
        return _strip_optional(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(get_args(annotation))
        if len(args) == 1:
            inner, inner_nullable = _strip_optional(args[0])
            return inner, nullable or inner_nullable
        return annotation, nullable
    return annotation, False


def _literal_type(values: tuple[Any, ...], where: str) -> pa.DataType:
    kinds = {type(v.value) if isinstance(v, enum.Enum) else type(v) for v in values}
    if kinds <= {str}:
        return pa.string()
    if kinds <= {int}:
        return pa.int64()
    raise ConfigError(
        f"{where}: Literal/Enum values must be all str or all int, got {sorted(k.__name__ for k in kinds)}"
    )


def arrow_type(annotation: Any, where: str = "field") -> tuple[pa.DataType, bool]:
    """The Arrow type of one annotation, and whether it is nullable."""
    inner, nullable = _strip_optional(annotation)
    if inner in _SCALARS:
        return _SCALARS[inner], nullable
    origin, args = get_origin(inner), get_args(inner)
    if isinstance(inner, type) and issubclass(inner, enum.Enum):
        return _literal_type(tuple(inner), where), nullable
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return pa.struct(list(schema_for(inner))), nullable
    if origin is Literal:
        return _literal_type(args, where), nullable
    if origin in (list, tuple, set, frozenset, Sequence) and args:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise ConfigError(f"{where}: only homogeneous tuple[X, ...] maps to an Arrow list")
        item_type, item_nullable = arrow_type(args[0], f"{where}[]")
        return pa.list_(pa.field("item", item_type, nullable=item_nullable)), nullable
    if origin is dict and len(args) == 2:
        key_type, _ = arrow_type(args[0], f"{where} key")
        value_type, value_nullable = arrow_type(args[1], f"{where} value")
        return pa.map_(key_type, pa.field("value", value_type, nullable=value_nullable)), nullable
    raise ConfigError(
        f"{where}: no Arrow type for {annotation!r}; use int, float, str, bool, bytes, datetime, date, "
        "Optional, list, dict or a nested model"
    )


@functools.cache
def schema_for(model: type[BaseModel]) -> pa.Schema:
    """The Arrow schema of `model`: its fields in declaration order, by field name."""
    fields = []
    for name, info in model.model_fields.items():
        type_, nullable = arrow_type(info.annotation, f"{model.__name__}.{name}")
        fields.append(pa.field(name, type_, nullable=nullable))
    return pa.schema(fields)


def to_table(
    data: pa.Table | Sequence[BaseModel | dict[str, Any]],
    *,
    model: type[BaseModel] | None = None,
    schema: pa.Schema | None = None,
    alias: str = "",
) -> pa.Table:
    """Rows (models or dicts) or a table -> a table with the declared schema when there is one.

    Raises RecordValidationError (carrying the record) for a record that does not match `model`.
    """
    if schema is None and model is not None:
        schema = schema_for(model)
    if isinstance(data, pa.Table):
        if schema is None:
            return data
        missing = [n for n in schema.names if n not in data.column_names]
        if missing:
            raise ConfigError(f"table is missing column(s) {missing} of the declared schema")
        return data.select(schema.names).cast(schema)
    rows: list[dict[str, Any]] = []
    for record in data:
        if model is not None:
            try:
                rows.append(as_model(model, record).model_dump())
            except ValidationError as exc:
                raise RecordValidationError(alias, validation_message(exc), record) from exc
        elif isinstance(record, BaseModel):
            if schema is None:
                schema = schema_for(type(record))
            rows.append(record.model_dump())
        else:
            rows.append(dict(record))
    return pa.Table.from_pylist(rows, schema=schema)
