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

from .errors import bad_request

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
    files: list[tuple[str, Path]], columns: list[str] | None, fallback: pa.Schema | None, dataset_rid: str
) -> TablePlan:
    """The output schema is the first file's (or `fallback` for an empty view), narrowed to `columns`."""
    sources = [(blob, "csv" if path.lower().endswith(".csv") else "parquet") for path, blob in files]
    base = _file_schema(*sources[0]) if sources else (fallback or pa.schema([]))
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


# Foundry schema -> Arrow, so an empty view with a schema still reads as a typed, empty table.

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


def foundry_to_arrow(schema: dict[str, Any]) -> pa.Schema:
    return pa.schema([pa.field(f.get("name") or "", _arrow_type(f), f.get("nullable", True)) for f in _fields(schema)])


def _fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    fields = schema.get("fieldSchemaList")
    return [f for f in fields if isinstance(f, dict)] if isinstance(fields, list) else []


def _arrow_type(f: dict[str, Any]) -> pa.DataType:
    type_ = f.get("type")
    if isinstance(type_, str) and type_ in _SIMPLE:
        return _SIMPLE[type_]
    if type_ == "DECIMAL":
        return pa.decimal128(int(f.get("precision") or 38), int(f.get("scale") or 0))
    if type_ == "ARRAY" and isinstance(f.get("arraySubtype"), dict):
        return pa.list_(_arrow_type(f["arraySubtype"]))
    if type_ == "MAP" and isinstance(f.get("mapKeyType"), dict) and isinstance(f.get("mapValueType"), dict):
        return pa.map_(_arrow_type(f["mapKeyType"]), _arrow_type(f["mapValueType"]))
    if type_ == "STRUCT" and isinstance(f.get("subSchemas"), list):
        return pa.struct([pa.field(s.get("name") or "", _arrow_type(s)) for s in f["subSchemas"]])
    raise bad_request("InvalidSchema", errorType="UnsupportedType", message=f"unsupported field type {type_!r}")


def validate_schema(schema: Any) -> dict[str, Any]:
    """putSchema accepts what readTable could turn into Arrow."""
    if not isinstance(schema, dict) or not isinstance(schema.get("fieldSchemaList"), list):
        raise bad_request(
            "InvalidSchema", errorType="MissingFieldSchemaList", message="schema.fieldSchemaList is required"
        )
    foundry_to_arrow(schema)
    return schema
