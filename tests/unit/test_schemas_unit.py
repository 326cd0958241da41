"""Model vs Foundry schema comparison (`connector check`) and the schemas `connector schema` prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from connectors.doubler import Doubler
from connectors.stream_archiver import StreamArchiver
from fake_stream_proxy.stack import load_stack
from framework import DeadLetter
from framework._schemas import (
    dataset_mismatches,
    declared_schemas,
    read_mismatches,
    stack_file,
    written_mismatches,
)
from framework._streams.schema import stream_schema
from framework.cli import main


class Inner(BaseModel):
    a: int


class Out(BaseModel):
    x: int
    note: str | None = None
    inner: Inner
    tags: list[str]


def fields(model: type[BaseModel]) -> list[dict[str, object]]:
    return stream_schema(model)["fields"]  # type: ignore[no-any-return]


def test_a_model_matches_its_own_schema_both_ways() -> None:
    assert written_mismatches(fields(Out), fields(Out)) == []
    assert read_mismatches(Out, fields(Out)) == []
    assert written_mismatches(fields(DeadLetter), fields(DeadLetter)) == []


def test_written_names_each_field_the_stream_would_refuse() -> None:
    class Stream(BaseModel):
        x: str  # the model writes a long
        note: str  # not nullable: the model may write null
        inner: Inner
        extra: int  # required by the stream, never written

    problems = written_mismatches(fields(Out), fields(Stream))
    assert problems == [
        "field 'x': the model writes long, the stream's field is string",
        "field 'note': the model may write null, the stream's field is not nullable",
        "field 'tags': the model writes it, the stream has no such field",
        "field 'extra': the stream requires it, the model does not write it",
    ]


def test_written_goes_into_structs_and_arrays() -> None:
    class OtherInner(BaseModel):
        a: float
        b: int

    class Stream(BaseModel):
        x: int
        note: str | None = None
        inner: OtherInner
        tags: list[int]

    assert written_mismatches(fields(Out), fields(Stream)) == [
        "field 'inner.a': the model writes long, the stream's field is double",
        "field 'inner.b': the stream requires it, the model does not write it",
        "field 'tags[]': the model writes string, the stream's field is long",
    ]


def test_read_accepts_narrower_numbers_and_missing_optional_fields() -> None:
    class Model(BaseModel):
        x: float
        y: int = 0

    assert read_mismatches(Model, [{"name": "x", "schema": {"nullable": False, "dataType": {"type": "integer"}}}]) == []


def test_read_names_missing_nullable_and_forbidden_fields() -> None:
    class Model(BaseModel):
        model_config = ConfigDict(extra="forbid")
        x: int
        y: int

    class Stream(BaseModel):
        x: int | None = None
        z: int

    assert read_mismatches(Model, fields(Stream)) == [
        "field 'x': the stream's field is nullable, the model does not accept null",
        "field 'y': the model requires it, the stream has no such field",
        "field 'z': the stream has it, the model forbids fields it does not declare",
    ]


def test_dataset_columns_are_compared_by_name_and_type() -> None:
    class Row(BaseModel):
        id: int
        name: str

    assert dataset_mismatches(Row, [{"name": "id", "type": "LONG"}, {"name": "name", "type": "STRING"}]) == []
    assert dataset_mismatches(Row, [{"name": "id", "type": "STRING"}]) == [
        "column 'id': the model writes LONG, the dataset's column is STRING",
        "column 'name': the model writes it, the dataset's schema has no such column",
    ]


def test_declared_schemas_cover_streams_and_modelled_datasets() -> None:
    doubler = declared_schemas(Doubler)
    assert doubler["numbers"] == {
        "kind": "stream",
        "direction": "input",
        "model": "connectors.doubler.connector:Number",
        "schema": {"fields": [{"name": "x", "schema": {"nullable": False, "dataType": {"type": "long"}}}]},
    }
    assert doubler["dead_letters"]["schema"] == stream_schema(DeadLetter)
    archive = declared_schemas(StreamArchiver)["archive"]
    assert (
        archive["kind"] == "dataset"
        and {"name": "id", "type": "LONG", "nullable": False} in archive["schema"]["fieldSchemaList"]
    )


def test_the_yaml_is_a_stack_file_the_fake_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "connectors.doubler:Doubler", "--yaml"]) == 0
    path = tmp_path / "stack.yaml"
    path.write_text(capsys.readouterr().out)
    stack = load_stack(path)
    assert stack.streams["numbers"].schema_ == stream_schema(Doubler.numbers.model)
    assert stack.jobs["connectors"].outputs == {"doubled": "doubled", "dead_letters": "dead_letters"}
    assert yaml.safe_load(path.read_text()) == stack_file(Doubler, "connectors.doubler:Doubler", "connectors")


def test_schema_prints_json_and_one_line_for_a_bad_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "connectors.doubler:Doubler"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"numbers", "doubled", "dead_letters"}
    assert main(["schema", "connectors.doubler:Nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no class 'Nope'" in err
    assert main(["schema", "connectors.geo:GeoFunctions"]) == 2
    assert "FunctionModule" in capsys.readouterr().err
