"""readTable: a view's Parquet and CSV files as one Arrow IPC stream (or CSV), one record batch at a time.

Datasets can be gigabytes, so nothing here holds a whole file or table: the plan reads only Parquet
footers and CSV first blocks (to fail with a clean 400 before the response starts), and the encoder
yields one serialized batch at a time for the handler to write to the socket.
"""

from __future__ import annotations

import io
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import ApiError, bad_request

BATCH_ROWS = 64 * 1024


def is_tabular(path: str) -> bool:
    """Spark-style: `_SUCCESS`, `_metadata`, dotfiles are not data."""
    name = path.rsplit("/", 1)[-1]
    return not name.startswith(("_", ".")) and name.lower().endswith((".parquet", ".csv"))


@dataclass
class TablePlan:
    schema: pa.Schema
    sources: list[tuple[Path, str]]  # (blob path, "parquet" | "csv"), in view order
    rows: int = 0  # rows emitted so far, for provenance
    files: list[str] = field(default_factory=list)


def plan_table(
    files: list[tuple[str, Path]], columns: list[str] | None, declared: pa.Schema | None, dataset_rid: str
) -> TablePlan:
    """The output schema is the put one (`declared`), else the first file's, narrowed to `columns`.

    Files are cast to it: a column the schema lacks is dropped, one the files lack reads as nulls.
    """
    sources = [(blob, "csv" if path.lower().endswith(".csv") else "parquet") for path, blob in files]
    base = declared or (_file_schema(*sources[0]) if sources else pa.schema([]))
    if columns:
        missing = [c for c in columns if base.get_field_index(c) < 0]
        if missing:
            raise bad_request(
                "Default:InvalidArgument", datasetRid=dataset_rid, message=f"unknown columns: {', '.join(missing)}"
            )
        base = pa.schema([base.field(c) for c in columns])
    return TablePlan(base, sources, files=[p for p, _ in files])


def _file_schema(path: Path, kind: str) -> pa.Schema:
    if kind == "parquet":
        schema: pa.Schema = pq.read_schema(path)
        return schema.remove_metadata()
    reader = pacsv.open_csv(path)
    try:
        csv_schema: pa.Schema = reader.schema
        return csv_schema
    finally:
        reader.close()


def _read(path: Path, kind: str, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    wanted = schema.names
    if kind == "csv":
        reader = pacsv.open_csv(path)
        present = [n for n in wanted if reader.schema.get_field_index(n) >= 0]
        reader.close()
        opts = pacsv.ConvertOptions(include_columns=present or None)
        reader = pacsv.open_csv(path, convert_options=opts)
        try:
            yield from reader
        finally:
            reader.close()
        return
    pf = pq.ParquetFile(path)
    try:
        present = [n for n in wanted if pf.schema_arrow.get_field_index(n) >= 0]
        if present or not wanted:
            yield from pf.iter_batches(batch_size=BATCH_ROWS, columns=present)
        else:  # none of the wanted columns: only the row counts matter
            for i in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(i).num_rows
                yield pa.record_batch([pa.nulls(n, f.type) for f in schema], schema=schema)
    finally:
        pf.close()


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Order columns like `schema`, fill absent ones with nulls, cast differing types."""
    if batch.schema.equals(schema):
        return batch
    arrays = []
    for f in schema:
        i = batch.schema.get_field_index(f.name)
        col = batch.column(i) if i >= 0 else pa.nulls(batch.num_rows, f.type)
        arrays.append(col if col.type == f.type else col.cast(f.type))
    return pa.record_batch(arrays, schema=schema)


def iter_batches(plan: TablePlan, row_limit: int | None) -> Iterator[pa.RecordBatch]:
    for path, kind in plan.sources:
        for raw in _read(path, kind, plan.schema):
            batch = _conform(raw, plan.schema)
            if row_limit is not None:
                remaining = row_limit - plan.rows
                if remaining <= 0:
                    return
                batch = batch.slice(0, remaining) if batch.num_rows > remaining else batch
            plan.rows += batch.num_rows
            yield batch
        if row_limit is not None and plan.rows >= row_limit:
            return


def encode(plan: TablePlan, fmt: str, row_limit: int | None) -> Generator[bytes, None, None]:
    """Serialized chunks: ARROW is the IPC *stream* format (what the SDK's `pa.ipc.open_stream` reads)."""
    sink = io.BytesIO()
    writer: Any = pa.ipc.new_stream(sink, plan.schema) if fmt == "ARROW" else pacsv.CSVWriter(sink, plan.schema)
    for batch in iter_batches(plan, row_limit):
        writer.write_batch(batch)
        yield _drain(sink)
    writer.close()
    yield _drain(sink)


def _drain(sink: io.BytesIO) -> bytes:
    data = sink.getvalue()
    sink.seek(0)
    sink.truncate()
    return data


# Foundry schema -> Arrow: a put schema decides readTable's columns (and types an empty view).

_SIMPLE: dict[str, pa.DataType] = {
    "STRING": pa.string(),
    "LONG": pa.int64(),
    "INTEGER": pa.int32(),
    "SHORT": pa.int16(),
    "BYTE": pa.int8(),
    "DOUBLE": pa.float64(),
    "FLOAT": pa.float32(),
    "BOOLEAN": pa.bool_(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "BINARY": pa.binary(),
}
_NESTED = {"ARRAY": ("arraySubtype",), "MAP": ("mapKeyType", "mapValueType"), "STRUCT": ("subSchemas",)}


def foundry_to_arrow(schema: dict[str, Any]) -> pa.Schema:
    """Only for schemas `validate_schema` accepted."""
    return pa.schema([_arrow_field(f) for f in schema["fieldSchemaList"]])


def _arrow_field(f: dict[str, Any], name: str | None = None) -> pa.Field:
    return pa.field(f.get("name") or name or "", _arrow_type(f), f.get("nullable", True))


def _arrow_type(f: dict[str, Any]) -> pa.DataType:
    type_ = f["type"]
    if type_ in _SIMPLE:
        return _SIMPLE[type_]
    if type_ == "DECIMAL":
        return pa.decimal128(int(f.get("precision", 38)), int(f.get("scale", 0)))
    if type_ == "ARRAY":
        return pa.list_(_arrow_field(f["arraySubtype"], "item"))
    if type_ == "MAP":
        return pa.map_(_arrow_type(f["mapKeyType"]), _arrow_field(f["mapValueType"], "value"))
    return pa.struct([_arrow_field(s) for s in f["subSchemas"]])


DATAFRAME_READERS = ("AVRO", "CSV", "PARQUET", "DATASOURCE")  # the SDK's DataframeReader


def put_schema_args(body: dict[str, Any]) -> tuple[str, str | None, str]:
    """putSchema's (branchName, endTransactionRid, dataframeReader), defaults applied as the SDK documents."""
    branch, end = body.get("branchName") or "master", body.get("endTransactionRid")
    reader = body.get("dataframeReader") or "PARQUET"
    if not isinstance(branch, str) or not (end is None or isinstance(end, str)) or reader not in DATAFRAME_READERS:
        raise bad_request(
            "Default:InvalidArgument",
            message=f"branchName and endTransactionRid are strings; dataframeReader is one of {DATAFRAME_READERS}",
        )
    return branch, end, str(reader)


def validate_schema(schema: Any) -> dict[str, Any]:
    """putSchema accepts what the SDK's `DatasetSchema` model would, and readTable can turn into Arrow."""
    if not isinstance(schema, dict) or not isinstance(schema.get("fieldSchemaList"), list):
        raise _invalid("MissingFieldSchemaList", "schema.fieldSchemaList is required")
    names = [_validate_field(f, f"fieldSchemaList[{i}]", top=True) for i, f in enumerate(schema["fieldSchemaList"])]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _invalid("DuplicateFieldName", f"duplicate column names: {', '.join(duplicates)}")
    return schema


def _validate_field(f: Any, where: str, top: bool = False) -> str:
    if not isinstance(f, dict):
        raise _invalid("InvalidField", f"{where} must be an object")
    name, type_ = f.get("name"), f.get("type")
    if not (isinstance(name, str) and name) if top else not (name is None or isinstance(name, str)):
        raise _invalid("InvalidFieldName", f"{where}.name must be a non-empty string")
    if not isinstance(f.get("nullable"), bool):
        raise _invalid("InvalidField", f"{where}.nullable (boolean) is required")
    if type_ not in _SIMPLE and type_ not in ("DECIMAL", *_NESTED):
        raise _invalid("UnsupportedType", f"{where}: unsupported field type {type_!r}")
    if type_ == "DECIMAL":  # the SDK leaves precision and scale optional: defaults (38, 0)
        precision, scale = f.get("precision", 38), f.get("scale", 0)
        if not (isinstance(precision, int) and isinstance(scale, int) and 0 <= scale <= precision <= 38):
            raise _invalid("InvalidDecimal", f"{where}: DECIMAL needs precision 1..38 and scale 0..precision")
    for key in _NESTED.get(str(type_), ()):
        sub = f.get(key)
        if key == "subSchemas":
            if not isinstance(sub, list):
                raise _invalid("MissingNestedType", f"{where}: STRUCT needs a subSchemas list")
            for i, s in enumerate(sub):
                if not isinstance(s, dict) or not isinstance(s.get("name"), str):
                    raise _invalid("InvalidFieldName", f"{where}.subSchemas[{i}].name is required")
                _validate_field(s, f"{where}.subSchemas[{i}]")
        elif isinstance(sub, dict):
            _validate_field(sub, f"{where}.{key}")
        else:
            raise _invalid("MissingNestedType", f"{where}: {type_} needs {key}")
    return str(name)


def _invalid(error_type: str, message: str) -> ApiError:
    """The SDK's `InvalidSchema` (core errors): parameters errorType and message."""
    return bad_request("InvalidSchema", errorType=error_type, message=message)
