"""Arrow schemas -> Foundry dataset schemas (the JSON `putSchema` takes).

Why: Parquet files uploaded through the API give a Foundry dataset no schema, and without one Foundry
cannot read it as a table (readTable, previews, Spark). So a `DatasetOutput` puts the schema of the tables
it wrote after the commit (`SchemaPublisher` in `transactions`), and again only when it changes.

Mapping (the `SchemaFieldType` values of foundry_sdk's `DatasetFieldSchema`):
int8 BYTE, int16 SHORT, int32 INTEGER, int64 LONG, float32 FLOAT, float64 DOUBLE, bool BOOLEAN,
string/large_string STRING, binary/large_binary BINARY, date32/date64 DATE, timestamp (any unit or zone)
TIMESTAMP, decimal DECIMAL (precision, scale; precision <= 38), list/large_list ARRAY (arraySubtype),
map MAP (mapKeyType, mapValueType), struct STRUCT (subSchemas), dictionary -> its value type.
Anything else (unsigned ints, float16, time, duration, null, ...) has no Foundry type: ConfigError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from .._errors import ConfigError

_SIMPLE: list[tuple[Callable[[pa.DataType], bool], str]] = [
    (pa.types.is_int8, "BYTE"),
    (pa.types.is_int16, "SHORT"),
    (pa.types.is_int32, "INTEGER"),
    (pa.types.is_int64, "LONG"),
    (pa.types.is_float32, "FLOAT"),
    (pa.types.is_float64, "DOUBLE"),
    (pa.types.is_boolean, "BOOLEAN"),
    (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "STRING"),
    (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), "BINARY"),
    (lambda t: pa.types.is_date32(t) or pa.types.is_date64(t), "DATE"),
    (pa.types.is_timestamp, "TIMESTAMP"),
]
MAX_DECIMAL_PRECISION = 38


def foundry_dataset_schema(arrow_schema: pa.Schema) -> dict[str, Any]:
    """The Foundry `DatasetSchema` JSON of `arrow_schema`; raises ConfigError naming an unsupported column."""
    names = arrow_schema.names
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"column {duplicates[0]!r} appears more than once; Foundry dataset columns are unique")
    return {"fieldSchemaList": [_field(f.type, f.nullable, f.name, f.name) for f in arrow_schema]}


def _field(type_: pa.DataType, nullable: bool, name: str | None, where: str) -> dict[str, Any]:
    """One `DatasetFieldSchema`; `name` is None for array elements and map keys/values, as in Foundry."""
    if pa.types.is_dictionary(type_):  # dictionary encoding is storage, not type: Parquet readers decode it
        type_ = type_.value_type
    out: dict[str, Any] = {"type": _type_name(type_, where), "nullable": nullable}
    if name is not None:
        out["name"] = name
    if pa.types.is_decimal(type_):
        out.update(precision=type_.precision, scale=type_.scale)
    elif pa.types.is_list(type_) or pa.types.is_large_list(type_):
        item = type_.value_field
        out["arraySubtype"] = _field(item.type, item.nullable, None, f"{where}[]")
    elif pa.types.is_map(type_):
        key, item = type_.key_field, type_.item_field
        out["mapKeyType"] = _field(key.type, False, None, f"{where}{{key}}")
        out["mapValueType"] = _field(item.type, item.nullable, None, f"{where}{{value}}")
    elif pa.types.is_struct(type_):
        subs = [type_.field(i) for i in range(type_.num_fields)]
        out["subSchemas"] = [_field(s.type, s.nullable, s.name, f"{where}.{s.name}") for s in subs]
    return out


def _type_name(type_: pa.DataType, where: str) -> str:
    for matches, name in _SIMPLE:
        if matches(type_):
            return name
    if pa.types.is_decimal(type_):
        if type_.precision > MAX_DECIMAL_PRECISION:
            raise ConfigError(f"column {where!r}: {type_} exceeds Foundry's decimal precision of 38")
        return "DECIMAL"
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return "ARRAY"
    if pa.types.is_map(type_):
        return "MAP"
    if pa.types.is_struct(type_):
        return "STRUCT"
    raise ConfigError(
        f"column {where!r}: Arrow type {type_} has no Foundry dataset schema type; cast it (e.g. unsigned to a "
        "wider signed int, time to string) or give the DatasetOutput put_schema=False"
    )


def table_schema(known: pa.Schema | None, table: pa.Schema) -> pa.Schema:
    """Check `table` maps to Foundry and agrees with the transaction's earlier tables; the union of both.

    Raised before uploading, so a transaction whose files no single Foundry schema could describe aborts.
    """
    foundry_dataset_schema(table)
    if known is None:
        return table
    try:
        return pa.unify_schemas([known, table], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise ConfigError(f"tables written in one transaction disagree on column types: {err}") from err
