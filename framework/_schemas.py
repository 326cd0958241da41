"""The Foundry schemas a connector's models map to (`connector schema`), and how they disagree with what Foundry
holds (`connector check`): one line per mismatched field, naming it.

Two directions, since a model both writes and reads:

- an output's model must produce records its stream accepts: every field the model sends exists on the
  stream, with a type that holds its values, and a stream field the model may leave null is nullable;
- an input's model must parse the records its stream holds: every field the model requires exists on the
  stream and is never null there, with a type the model accepts; a few of the latest records are parsed too.

A dataset output with a model is compared with the dataset's schema, once it has one.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from ._datasets.api import dataset_path
from ._datasets.arrow import schema_for
from ._datasets.handles import DatasetOutput
from ._datasets.schema import foundry_dataset_schema
from ._errors import ConfigError, FoundryError
from ._handles import Handle, declared_handles, declared_resources
from ._streams.api import StreamHandle, stream_path
from ._streams.input import StreamInput
from ._streams.schema import stream_schema

#: How many of the latest records of each input partition `connector check` parses with the model.
SAMPLE_PER_PARTITION = 5
_INTEGERS = ("byte", "short", "integer", "long")
_NUMBERS = (*_INTEGERS, "float", "double")
#: model type -> the stream types holding every value of it (written) / the stream types it parses (read).
_WRITABLE: dict[str, tuple[str, ...]] = {"long": ("long",), "double": ("double",)}
_READABLE: dict[str, tuple[str, ...]] = {"long": _INTEGERS, "double": _NUMBERS}


def declared_schemas(cls: type) -> dict[str, dict[str, Any]]:
    """`{alias: {"kind", "direction", "model", "schema"}}` for every declared handle with a record model."""
    found: dict[str, dict[str, Any]] = {}
    for handle in declared_handles(cls).values():
        entry = {"kind": handle.kind, "direction": handle.direction}
        if isinstance(handle, StreamHandle):
            model: type[BaseModel] = handle.model
            found[handle.alias] = {**entry, "model": _qualname(model), "schema": stream_schema(model)}
        elif isinstance(handle, DatasetOutput) and handle.model is not None:
            schema = foundry_dataset_schema(schema_for(handle.model))
            found[handle.alias] = {**entry, "model": _qualname(handle.model), "schema": schema}
    return found


def stack_file(cls: type, spec: str, job: str) -> dict[str, Any]:
    """A stack file for `fake-stream-proxy serve --stack`: every declared resource (stream schemas inline) and a job."""
    stack: dict[str, Any] = {"streams": {}, "datasets": {}, "media_sets": {}}
    inputs: dict[str, str] = {}
    outputs: dict[str, str] = {}
    for handle in declared_resources(cls).values():
        if isinstance(handle, StreamHandle):
            stack["streams"][handle.alias] = {"schema": stream_schema(handle.model)}
        elif handle.kind == "dataset":
            stack["datasets"][handle.alias] = {}
        elif handle.kind == "media_set":
            stack["media_sets"][handle.alias] = {}
        (inputs if handle.direction == "input" else outputs)[handle.alias] = handle.alias
    stack = {k: v for k, v in stack.items() if v}
    stack["jobs"] = {job: {"connector": spec, "inputs": inputs, "outputs": outputs}}
    return stack


def _qualname(model: type) -> str:
    return f"{model.__module__}:{model.__qualname__}"


# Comparing.


def written_mismatches(
    model_fields: list[dict[str, Any]], stream_fields: list[dict[str, Any]], at: str = ""
) -> list[str]:
    """Why records the model produces would be refused by a stream with `stream_fields` (empty: accepted)."""
    problems: list[str] = []
    theirs = {f["name"]: f["schema"] for f in stream_fields}
    ours = {f["name"]: f["schema"] for f in model_fields}
    for name, schema in ours.items():
        if name not in theirs:
            problems.append(f"field {at + name!r}: the model writes it, the stream has no such field")
            continue
        if schema["nullable"] and not theirs[name]["nullable"]:
            problems.append(f"field {at + name!r}: the model may write null, the stream's field is not nullable")
        problems += _types(schema["dataType"], theirs[name]["dataType"], f"{at}{name}", written=True)
    for name, schema in theirs.items():
        if name not in ours and not schema["nullable"]:
            problems.append(f"field {at + name!r}: the stream requires it, the model does not write it")
    return problems


def read_mismatches(model: type[BaseModel], stream_fields: list[dict[str, Any]], at: str = "") -> list[str]:
    """Why records of a stream with `stream_fields` would not parse as `model` (empty: they would)."""
    problems: list[str] = []
    theirs = {f["name"]: f["schema"] for f in stream_fields}
    ours = {f["name"]: f["schema"] for f in stream_schema(model)["fields"]}
    required = {info.alias or name for name, info in model.model_fields.items() if info.is_required()}
    for name, schema in ours.items():
        if name not in theirs:
            if name in required:
                problems.append(f"field {at + name!r}: the model requires it, the stream has no such field")
            continue
        if theirs[name]["nullable"] and not schema["nullable"]:
            problems.append(f"field {at + name!r}: the stream's field is nullable, the model does not accept null")
        problems += _types(schema["dataType"], theirs[name]["dataType"], f"{at}{name}", written=False)
    if model.model_config.get("extra") == "forbid":
        problems += [
            f"field {at + name!r}: the stream has it, the model forbids fields it does not declare"
            for name in theirs
            if name not in ours
        ]
    return problems


def _types(ours: dict[str, Any], theirs: dict[str, Any], name: str, *, written: bool) -> list[str]:
    mine, other = ours["type"], theirs["type"]
    if mine == "struct" and other == "struct":
        if written:
            return written_mismatches(ours["subFields"], theirs["subFields"], f"{name}.")
        return _struct_read(ours["subFields"], theirs["subFields"], f"{name}.")
    if mine == "array" and other == "array":
        return _nested(ours["itemsSchema"], theirs["itemsSchema"], f"{name}[]", written=written)
    if mine == "map" and other == "map":
        keys = _nested(ours["keySchema"], theirs["keySchema"], f"{name}{{key}}", written=written)
        return keys + _nested(ours["valueSchema"], theirs["valueSchema"], f"{name}{{value}}", written=written)
    allowed = (_WRITABLE if written else _READABLE).get(mine, (mine,))
    if other in allowed:
        return []
    verb = "writes" if written else "reads"
    return [f"field {name!r}: the model {verb} {mine}, the stream's field is {other}"]


def _nested(ours: dict[str, Any], theirs: dict[str, Any], name: str, *, written: bool) -> list[str]:
    problems = []
    if written and ours["nullable"] and not theirs["nullable"]:
        problems.append(f"field {name!r}: the model may write null, the stream's field is not nullable")
    if not written and theirs["nullable"] and not ours["nullable"]:
        problems.append(f"field {name!r}: the stream's field is nullable, the model does not accept null")
    return problems + _types(ours["dataType"], theirs["dataType"], name, written=written)


def _struct_read(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], at: str) -> list[str]:
    """A nested model read: a field it lacks on the stream is a problem only when it is not nullable."""
    mine = {f["name"]: f for f in ours}
    problems = [
        f"field {at + name!r}: the model requires it, the stream has no such field"
        for name, f in mine.items()
        if name not in {t["name"] for t in theirs} and not f["schema"]["nullable"]
    ]
    for field in theirs:
        if field["name"] in mine:
            problems += _nested(mine[field["name"]]["schema"], field["schema"], f"{at}{field['name']}", written=False)
    return problems


def dataset_mismatches(model: type[BaseModel], dataset_fields: list[dict[str, Any]]) -> list[str]:
    """Columns of `model` the dataset's schema lacks or types differently."""
    theirs = {f.get("name"): f for f in dataset_fields}
    problems = []
    for column in foundry_dataset_schema(schema_for(model))["fieldSchemaList"]:
        found = theirs.get(column["name"])
        if found is None:
            problems.append(f"column {column['name']!r}: the model writes it, the dataset's schema has no such column")
        elif found.get("type") != column["type"]:
            problems.append(
                f"column {column['name']!r}: the model writes {column['type']}, "
                f"the dataset's column is {found.get('type')}"
            )
    return problems


# Against Foundry (the handle is bound and its check() has run).


async def schema_problems(handle: Handle) -> list[str]:
    """Every mismatch between `handle`'s model and its resource's schema, one line each (empty: none)."""
    if isinstance(handle, StreamHandle):
        held = (handle.info.schema if handle.info is not None else None) or {}
        # No fields: a stream without a schema (answered as `{"fields": []}`) takes any JSON object; its records tell.
        if not held.get("fields"):
            return await _sample(handle) if isinstance(handle, StreamInput) else []
        if handle.direction == "output":
            return written_mismatches(stream_schema(handle.model)["fields"], held["fields"])
        problems = read_mismatches(handle.model, held["fields"])
        if isinstance(handle, StreamInput):
            problems += await _sample(handle)
        return problems
    if isinstance(handle, DatasetOutput) and handle.model is not None:
        try:
            body = await handle.client.request_json(
                "GET", dataset_path(handle.rid, "getSchema"), params={"branchName": handle.branch, "preview": True}
            )
        except FoundryError as exc:
            if exc.status == 404:
                return []  # no schema yet: the first commit puts the model's
            raise
        schema = (body or {}).get("schema", body) or {}
        return dataset_mismatches(handle.model, schema.get("fieldSchemaList") or [])
    return []


async def _sample(handle: StreamInput[Any]) -> list[str]:
    """Parse the latest few records of every partition with the model: one line per field that fails."""
    problems: list[str] = []
    for partition, end in sorted((await handle.end_offsets()).items()):
        if end <= 0:
            continue
        start = max(0, end - SAMPLE_PER_PARTITION)
        records = await handle.client.request_json(
            "GET",
            stream_path(handle.rid, handle.branch, "/getRecords", high_scale=True),
            service="stream_proxy",
            params={"partitionId": partition, "startOffset": start, "limit": SAMPLE_PER_PARTITION, "preview": True},
        )
        for record in records or []:
            try:
                handle.model.model_validate(record.get("value"))
            except ValidationError as exc:
                for err in exc.errors():
                    field = ".".join(str(p) for p in err["loc"]) or "record"
                    problems.append(
                        f"field {field!r}: record at partition {partition} offset {record.get('offset')} does not "
                        f"parse: {err['msg']}"
                    )
    return list(dict.fromkeys(problems))


async def check_schema(handle: Handle, log: Any, failures: list[Exception]) -> bool:
    """`connector check`'s schema step for one reachable handle: logs each mismatch as its own line and adds one
    ConfigError to `failures`; True when there was any."""
    try:
        problems = await schema_problems(handle)
    except FoundryError as exc:
        problems = [f"schema cannot be read: {exc}"]
    for problem in problems:
        log.error("check failed", alias=handle.alias, rid=handle.rid, error=problem)
    if problems:
        failures.append(ConfigError(f"{handle.alias}: {problems[0]}"))
    return bool(problems)


def check_summary(log: Any, resources: int, failed: int) -> None:
    """The last line of `connector check`: how many declared resources passed."""
    if failed:
        log.error(f"check failed: {failed} of {resources}", resources=resources, failed=failed)
    else:
        log.info(f"check passed: {resources} resources", resources=resources, failed=0)
