"""A stream schema compiled into a whole-batch check, so a valid batch costs C loops instead of Python ones.

The check is conservative: True means every record is one `schema.validate_record` accepts and returns
unchanged (same keys in schema order, values it does not normalise), so storing the records as sent is
storing what validation would have produced. False means only "not sure": the caller then validates record
by record with `validate_record`, which gives the same errors (name, record path, message) as ever. Types
the check does not cover (decimal, binary, array, map, struct), absent fields, strings where a long, date
or timestamp may also be a string, and out-of-range numbers all take that path.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

from .schema import FLOAT32_MAX, INT_BITS

BatchCheck = Callable[[list[Any]], bool]
ColumnCheck = Callable[[list[Any]], bool]
_NONE = type(None)
# Types whose every value of these Python types is valid as it is; a date or timestamp string needs parsing.
_SIMPLE: dict[str, set[type]] = {
    "double": {int, float},
    "string": {str},
    "boolean": {bool},
    "date": {int},
    "timestamp": {int},
}


def _types(allowed: set[type], nullable: bool) -> frozenset[type]:
    return frozenset(allowed | {_NONE}) if nullable else frozenset(allowed)


def _bounded(allowed: frozenset[type], low: float, high: float) -> ColumnCheck:
    """Only `allowed` types, and every non-null value within [low, high] (NaN fails the comparison: unsure)."""

    def check(column: list[Any]) -> bool:
        kinds = set(map(type, column))
        if not kinds <= allowed:
            return False
        values = [v for v in column if v is not None] if _NONE in kinds else column
        return not values or (low <= min(values) and max(values) <= high)

    return check


def _typed(allowed: frozenset[type]) -> ColumnCheck:
    return lambda column: set(map(type, column)) <= allowed


def _column_check(field_schema: dict[str, Any]) -> ColumnCheck | None:
    """The check for one field's column of values, or None when only `validate_record` can tell."""
    kind, nullable = field_schema["dataType"]["type"], field_schema["nullable"]
    if kind in INT_BITS:
        bits = INT_BITS[kind]
        return _bounded(_types({int}, nullable), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if kind == "float":
        return _bounded(_types({int, float}, nullable), -FLOAT32_MAX, FLOAT32_MAX)
    simple = _SIMPLE.get(kind)
    return None if simple is None else _typed(_types(simple, nullable))


def _never(_: list[Any]) -> bool:
    return False


def _dicts(records: list[Any]) -> bool:
    return set(map(type, records)) <= {dict}


def compile_check(schema: dict[str, Any] | None) -> BatchCheck:
    """Built once per stream view (its schema never changes) and cached by the store."""
    if schema is None:
        return _dicts  # no schema accepts any JSON object as it is
    names = tuple(f["name"] for f in schema["fields"])
    columns: list[tuple[itemgetter[Any], ColumnCheck]] = []
    for field in schema["fields"]:
        check = _column_check(field["schema"])
        if check is None:
            return _never
        columns.append((itemgetter(field["name"]), check))

    def check_batch(records: list[Any]) -> bool:
        if not _dicts(records):
            return False
        if len(names) > 1:  # every field, in schema order
            if not all(map(names.__eq__, map(tuple, records))):
                return False
        elif not set(map(len, records)) <= {len(names)}:  # then itemgetter finds the one field or raises
            return False
        try:
            return all(check(list(map(get, records))) for get, check in columns)
        except KeyError:
            return False

    return check_batch
