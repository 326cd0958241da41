"""Foundry stream schemas: check a schema when a stream is created, and records against it on publish.

A real stream rejects a whole batch when one record does not match, so validation runs over every
record before anything is stored. Validation also normalises what Foundry stores differently from what
it accepts (a long sent as a JSON string is stored as a number).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

PRIMITIVE_TYPES = frozenset(
    {"string", "integer", "long", "short", "byte", "double", "float", "boolean", "date", "timestamp", "binary"}
)
# The SDK's StreamSchema.keyFieldNames documentation lists exactly these.
KEY_TYPES = frozenset({"boolean", "byte", "date", "decimal", "integer", "long", "short", "string", "timestamp"})
INT_BITS = {"byte": 8, "short": 16, "integer": 32, "long": 64}
FLOAT32_MAX = 3.4028234663852886e38
_SPECIAL_FLOATS = {"NaN", "Infinity", "-Infinity"}


class SchemaError(Exception):
    """A schema a real stream would refuse (InvalidSchema / InvalidFieldSchema)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class RecordError(Exception):
    """A record that does not match its stream's schema; `path` locates the offending value."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# Checking schemas.


def check_schema(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict) or not isinstance(schema.get("fields"), list):
        raise SchemaError('a stream schema is an object with a "fields" list')
    names = _check_fields(schema["fields"], "")
    types = {f["name"]: f["schema"]["dataType"]["type"] for f in schema["fields"]}
    keys = schema.get("keyFieldNames")
    if keys is not None:
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise SchemaError("keyFieldNames must be a list of field names")
        for key in keys:
            if key not in names:
                raise SchemaError(f"key field {key!r} is not a field of the schema", key)
            if types[key] not in KEY_TYPES:
                raise SchemaError(f"key field {key!r} has type {types[key]}, which cannot be a key", key)
    return schema


def _check_fields(fields: list[Any], prefix: str) -> set[str]:
    names: set[str] = set()
    for field in fields:
        if not isinstance(field, dict) or not isinstance(field.get("name"), str) or not field["name"]:
            raise SchemaError(f"{prefix or 'fields'}: every field needs a non-empty name")
        name = prefix + field["name"]
        if field["name"] in names:
            raise SchemaError(f"duplicate field name {name!r}", name)
        names.add(field["name"])
        _check_field_schema(field.get("schema"), name)
    return names


def _check_field_schema(field_schema: Any, name: str) -> None:
    if not isinstance(field_schema, dict) or not isinstance(field_schema.get("nullable"), bool):
        raise SchemaError(f'{name}: a field schema needs "nullable" (boolean) and "dataType"', name)
    data_type = field_schema.get("dataType")
    kind = data_type.get("type") if isinstance(data_type, dict) else None
    if not isinstance(data_type, dict) or not isinstance(kind, str):
        raise SchemaError(f'{name}: "dataType" must be an object with a "type"', name)
    if kind in PRIMITIVE_TYPES:
        return
    if kind == "decimal":
        for attr in ("precision", "scale"):
            value = data_type.get(attr)
            if value is not None and (not isinstance(value, int) or not 0 <= value <= 38):
                raise SchemaError(f"{name}: decimal {attr} must be an integer from 0 to 38", name)
        precision, scale = data_type.get("precision"), data_type.get("scale")
        if precision is not None and scale is not None and scale > precision:
            raise SchemaError(f"{name}: decimal scale exceeds precision", name)
    elif kind == "array":
        _check_field_schema(data_type.get("itemsSchema"), f"{name}[]")
    elif kind == "map":
        _check_field_schema(data_type.get("keySchema"), f"{name}{{key}}")
        _check_field_schema(data_type.get("valueSchema"), f"{name}{{value}}")
    elif kind == "struct":
        if not isinstance(data_type.get("subFields"), list):
            raise SchemaError(f'{name}: a struct needs a "subFields" list', name)
        _check_fields(data_type["subFields"], f"{name}.")
    else:
        raise SchemaError(f"{name}: unknown data type {kind!r}", name)


def binary_field(schema: dict[str, Any] | None) -> str | None:
    """The field name when the schema is exactly one binary field (what publishBinaryRecord needs)."""
    if schema is None or len(schema["fields"]) != 1:
        return None
    field = schema["fields"][0]
    return str(field["name"]) if field["schema"]["dataType"]["type"] == "binary" else None


def partition_key(schema: dict[str, Any] | None, record: dict[str, Any]) -> str | None:
    """Canonical text of a record's key values, so one key always hashes to one partition."""
    keys = (schema or {}).get("keyFieldNames")
    if not keys:
        return None
    return json.dumps([record.get(k) for k in keys], sort_keys=True, separators=(",", ":"))


# Checking records.


def validate_record(schema: dict[str, Any] | None, record: Any, path: str = "record") -> dict[str, Any]:
    """The record as stored; RecordError when it does not match. No schema accepts any JSON object."""
    if not isinstance(record, dict):
        raise RecordError(path, "a record must be a JSON object")
    if schema is None:
        return record
    keys = set(schema.get("keyFieldNames") or ())
    return _struct(schema["fields"], record, path, keys)


def _struct(fields: list[dict[str, Any]], value: dict[str, Any], path: str, keys: set[str]) -> dict[str, Any]:
    known = {f["name"] for f in fields}
    extra = sorted(set(value) - known)
    if extra:
        raise RecordError(path, f"fields not in the schema: {', '.join(map(repr, extra))}")
    out: dict[str, Any] = {}
    for field in fields:
        name = field["name"]
        sub_path = f"{path}.{name}"
        if name in keys and field["schema"]["dataType"]["type"] == "timestamp" and isinstance(value.get(name), str):
            raise RecordError(sub_path, "a timestamp used as a key must be epoch milliseconds")
        if name in value:
            out[name] = _value(field["schema"], value[name], sub_path)
        elif not field["schema"]["nullable"]:
            raise RecordError(sub_path, "missing a value for a non-nullable field")
    return out


def _value(field_schema: dict[str, Any], value: Any, path: str) -> Any:
    if value is None:
        if not field_schema["nullable"]:
            raise RecordError(path, "null in a non-nullable field")
        return None
    data_type = field_schema["dataType"]
    kind = data_type["type"]
    if kind in INT_BITS:
        return _integer(kind, value, path)
    if kind in ("double", "float"):
        return _floating(kind, value, path)
    if kind == "decimal":
        return _decimal(data_type, value, path)
    if kind == "array":
        if not isinstance(value, list):
            raise _mismatch(path, "array", value)
        return [_value(data_type["itemsSchema"], item, f"{path}[{i}]") for i, item in enumerate(value)]
    if kind == "map":
        if not isinstance(value, dict):
            raise _mismatch(path, "map (JSON object)", value)
        for key in value:
            _map_key(data_type["keySchema"], key, f"{path}{{{key}}}")
        return {k: _value(data_type["valueSchema"], v, f"{path}{{{k}}}") for k, v in value.items()}
    if kind == "struct":
        if not isinstance(value, dict):
            raise _mismatch(path, "struct (JSON object)", value)
        return _struct(data_type["subFields"], value, path, set())
    _primitive(kind, value, path)
    return value


def _integer(kind: str, value: Any, path: str) -> int:
    if kind == "long" and isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise RecordError(path, f"expected a long, got the string {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _mismatch(path, kind, value)
    bits = INT_BITS[kind]
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise RecordError(path, f"{value} is out of range for {kind}")
    return value


def _floating(kind: str, value: Any, path: str) -> float | int | str:
    if isinstance(value, str) and value in _SPECIAL_FLOATS:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _mismatch(path, kind, value)
    if kind == "float" and math.isfinite(value) and abs(value) > FLOAT32_MAX:
        raise RecordError(path, f"{value} is out of range for float")
    return value


def _decimal(data_type: dict[str, Any], value: Any, path: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _mismatch(path, "decimal", value)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise RecordError(path, f"expected a decimal, got {value!r}") from None
    if not number.is_finite():
        raise RecordError(path, "a decimal must be finite")
    precision, scale = data_type.get("precision"), data_type.get("scale")
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    fraction_digits = max(0, -exponent)
    integer_digits = max(0, number.adjusted() + 1)
    if scale is not None and fraction_digits > scale:
        raise RecordError(path, f"{value} has more than {scale} digits after the point")
    if precision is not None and integer_digits > precision - (scale or 0):
        raise RecordError(path, f"{value} does not fit decimal({precision}, {scale or 0})")
    return value


def _map_key(key_schema: dict[str, Any], key: str, path: str) -> None:
    """JSON object keys are always strings; a non-string key type must parse from one."""
    kind = key_schema["dataType"]["type"]
    if kind in INT_BITS:
        try:
            _integer(kind, int(key), path)
        except ValueError:
            raise RecordError(path, f"map key {key!r} is not a {kind}") from None
    elif kind in ("string", "date", "timestamp", "decimal", "boolean"):
        if kind == "boolean" and key not in ("true", "false"):
            raise RecordError(path, f"map key {key!r} is not a boolean")
        if kind in ("date", "timestamp", "decimal"):
            _value(key_schema, key, path)
    else:
        raise RecordError(path, f"map keys of type {kind} are not supported")


def _primitive(kind: str, value: Any, path: str) -> None:
    if kind == "string":
        if not isinstance(value, str):
            raise _mismatch(path, kind, value)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise _mismatch(path, kind, value)
    elif kind == "date":
        if isinstance(value, str):
            try:
                date.fromisoformat(value)
            except ValueError:
                raise RecordError(path, f"expected an ISO date (YYYY-MM-DD), got {value!r}") from None
        elif isinstance(value, bool) or not isinstance(value, int):
            raise _mismatch(path, "date (ISO string or epoch days)", value)
    elif kind == "timestamp":
        if isinstance(value, str):
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise RecordError(path, f"expected an ISO timestamp, got {value!r}") from None
        elif isinstance(value, bool) or not isinstance(value, int):
            raise _mismatch(path, "timestamp (epoch milliseconds or ISO string)", value)
    elif kind == "binary":
        if not isinstance(value, str):
            raise _mismatch(path, "binary (base64 string)", value)
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise RecordError(path, "binary values must be base64 strings") from None


def _mismatch(path: str, expected: str, value: Any) -> RecordError:
    got = "null" if value is None else type(value).__name__
    return RecordError(path, f"expected {expected}, got {got} {json.dumps(value)[:60]}")
