"""A stack file: every stream, dataset, media set, job and function-mode runtime a local run needs, in one YAML.

    streams:
      numbers: {model: connectors.doubler:Number, partitions: 3}   # or schema: {fields: [...]}; branch: master
      doubled: {model: connectors.doubler:Doubled}
      dead_letters: {model: framework:DeadLetter}
    datasets:
      archive: {}
    media_sets:
      media: {transactional: false}
    jobs:
      doubler:
        connector: connectors.doubler:Doubler          # optional: what `connector run` should start
        inputs: {numbers: numbers}                      # alias -> resource name, or {resource: name, branch: b}
        outputs: {doubled: doubled, dead_letters: dead_letters}
    foundry:                                            # the emulator's seed-config shape (function mode)
      compute_modules: {runtimes: [{runtime_id: geo}], deployed_apps: [...]}

Applied before the fake prints its URL, and idempotent: resources are found again by type and name, a job by
its name and declaration, so a restart keeps rids, tokens and data. Everything is checked before anything is
created (unknown keys, models that do not import, duplicate aliases, an output also declared as an input,
names no section declares); a problem is one `StackError` line. For each job the fake writes, under
`STATE_DIR/jobs/<name>/`, `token` (the token as is: no trailing newline), `resource-alias-map.json` and `env`
(`KEY=value` lines: BUILD2_TOKEN, RESOURCE_ALIAS_MAP, FOUNDRY_URL, and CONNECTOR_SPEC when given).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .context import FakeContext

SCHEMA = """
CREATE TABLE IF NOT EXISTS stack_jobs (
    name TEXT PRIMARY KEY,
    job_rid TEXT NOT NULL,
    declaration TEXT NOT NULL       -- sha256 of the declared aliases: a changed job gets a new rid and token
);
"""


class StackError(Exception):
    """A stack file problem: one line naming the file, the place and what to do."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamSpec(_Strict):
    model: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    partitions: int = Field(1, ge=1, le=64)
    branch: str = "master"


class DatasetSpec(_Strict):
    branch: str = "master"


class MediaSetSpec(_Strict):
    transactional: bool = False


class Ref(_Strict):
    resource: str
    branch: str | None = None


class JobSpec(_Strict):
    connector: str | None = None
    inputs: dict[str, str | Ref] = Field(default_factory=dict)
    outputs: dict[str, str | Ref] = Field(default_factory=dict)


class StackFile(_Strict):
    streams: dict[str, StreamSpec] = Field(default_factory=dict)
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict)
    media_sets: dict[str, MediaSetSpec] = Field(default_factory=dict)
    jobs: dict[str, JobSpec] = Field(default_factory=dict)
    foundry: dict[str, Any] = Field(default_factory=dict)


class _NoDuplicates(yaml.SafeLoader):
    """YAML keeps the last of two equal keys; a stack file with a duplicate alias or name is an error."""


def _mapping(loader: _NoDuplicates, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise StackError(f"line {key_node.start_mark.line + 1}: {key!r} is declared twice")
        seen.add(key)
    return dict(loader.construct_mapping(node))


_NoDuplicates.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_stack(path: Path) -> StackFile:
    try:
        raw = yaml.load(path.read_text(), Loader=_NoDuplicates)
    except OSError as exc:
        raise StackError(f"{path}: cannot be read ({exc.strerror})") from exc
    except StackError as exc:
        raise StackError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise StackError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    try:
        return StackFile.model_validate(raw or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"] if str(p) not in ("str", "Ref"))  # union branch names
        what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise StackError(f"{path}: {where}: {what}") from None


def _import(spec: str, where: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise StackError(f"{where}: {spec!r} is not of the form package.module:Name")
    try:
        found = getattr(importlib.import_module(module_name), attr, None)
    except Exception as exc:  # any import failure is the user's to fix, in one line
        raise StackError(f"{where}: cannot import {module_name!r} ({type(exc).__name__}: {exc})") from None
    if found is None:
        raise StackError(f"{where}: {module_name!r} has no {attr!r}")
    return found


def _schema(name: str, spec: StreamSpec) -> dict[str, Any] | None:
    if spec.model is None:
        return spec.schema_
    from framework._streams.schema import stream_schema  # the framework maps pydantic models to stream schemas

    model = _import(spec.model, f"streams.{name}.model")
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise StackError(f"streams.{name}.model: {spec.model!r} is not a pydantic model")
    try:
        return stream_schema(model)
    except Exception as exc:
        raise StackError(f"streams.{name}.model: {exc}") from None


def _check_jobs(stack: StackFile) -> None:
    declared = set(stack.streams) | set(stack.datasets) | set(stack.media_sets)
    for type_a, names_a in (("streams", stack.streams), ("datasets", stack.datasets)):
        for type_b, names_b in (("datasets", stack.datasets), ("media_sets", stack.media_sets)):
            if type_a != type_b and (both := set(names_a) & set(names_b)):
                raise StackError(f"{sorted(both)[0]!r} is declared in both {type_a} and {type_b}: names are unique")
    for job_name, job in stack.jobs.items():
        if both := set(job.inputs) & set(job.outputs):
            raise StackError(f"jobs.{job_name}: alias {sorted(both)[0]!r} is both an input and an output")
        inputs = {r.resource if isinstance(r, Ref) else r for r in job.inputs.values()}
        for alias, ref in job.outputs.items():
            resource = ref.resource if isinstance(ref, Ref) else ref
            if resource in inputs:
                raise StackError(f"jobs.{job_name}.outputs.{alias}: {resource!r} is also an input of the job")
        for direction, refs in (("inputs", job.inputs), ("outputs", job.outputs)):
            for alias, ref in refs.items():
                resource = ref.resource if isinstance(ref, Ref) else ref
                if resource not in declared:
                    raise StackError(
                        f"jobs.{job_name}.{direction}.{alias}: no stream, dataset or media set is named {resource!r}"
                    )
        if job.connector is not None:
            _import(job.connector, f"jobs.{job_name}.connector")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


class Stack:
    """Plans and applies a stack file over the fake's services."""

    def __init__(self, ctx: FakeContext, stack: StackFile) -> None:
        self.ctx = ctx
        self.stack = stack
        ctx.storage.ensure_schema(SCHEMA)

    def check(self) -> dict[str, dict[str, Any]]:
        """Everything that can fail before anything is created; returns each stream's resolved schema body."""
        bodies = {
            name: {"type": "stream", "name": name, "partitions": s.partitions, "branch": s.branch,
                   "schema": _schema(name, s)}
            for name, s in self.stack.streams.items()
        }  # fmt: skip
        _check_jobs(self.stack)
        unknown = sorted(set(self.stack.foundry) - set(self.ctx.seeders))
        if unknown:
            raise StackError(f"foundry.{unknown[0]}: unknown section; known: {', '.join(sorted(self.ctx.seeders))}")
        return bodies

    def apply(self) -> dict[str, str]:
        """Create what is missing; returns resource name -> rid."""
        stream_bodies = self.check()
        rids: dict[str, str] = {}
        datasets = {n: {"type": "dataset", "name": n, "branch": d.branch} for n, d in self.stack.datasets.items()}
        media = {n: {"type": "media_set", "name": n, "transactional": m.transactional}
                 for n, m in self.stack.media_sets.items()}  # fmt: skip
        with self.ctx.storage.transaction():
            for type_, bodies in (("stream", stream_bodies), ("dataset", datasets), ("media_set", media)):
                for name, body in bodies.items():
                    rids[name] = self._existing(type_, name) or str(self.ctx.resource_creators[type_](body)["rid"])
            for section, config in self.stack.foundry.items():
                self.ctx.seeders[section](config or {})
        return rids

    def _existing(self, type_: str, name: str) -> str | None:
        row = self.ctx.storage.one(
            "SELECT rid FROM resources WHERE type = ? AND name = ? ORDER BY created_time LIMIT 1", (type_, name)
        )
        return None if row is None else str(row["rid"])

    def write_jobs(self, rids: dict[str, str], foundry_url: str) -> dict[str, Path]:
        """Declare (or find again) each job and write its files; returns job name -> its folder."""
        folders: dict[str, Path] = {}
        for name, job in self.stack.jobs.items():
            declared = {
                direction: {
                    alias: {"rid": rids[ref.resource if isinstance(ref, Ref) else ref],
                            "branch": (ref.branch if isinstance(ref, Ref) else None) or self._branch(ref)}
                    for alias, ref in refs.items()
                }
                for direction, refs in (("inputs", job.inputs), ("outputs", job.outputs))
            }  # fmt: skip
            digest = hashlib.sha256(json.dumps(declared, sort_keys=True).encode()).hexdigest()
            row = self.ctx.storage.one(
                "SELECT j.job_rid, j.token FROM stack_jobs s JOIN jobs j ON j.job_rid = s.job_rid"
                " WHERE s.name = ? AND s.declaration = ?",
                (name, digest),
            )
            if row is not None:
                job_rid, token = str(row["job_rid"]), str(row["token"])
                alias_map = {a: r for refs in declared.values() for a, r in refs.items()}
            else:
                created = self.ctx.auth.create_job(declared["inputs"], declared["outputs"])
                job_rid, token, alias_map = created["jobRid"], created["token"], created["resourceAliasMap"]
                self.ctx.storage.execute(
                    "INSERT OR REPLACE INTO stack_jobs (name, job_rid, declaration) VALUES (?, ?, ?)",
                    (name, job_rid, digest),
                )
            folder = self.ctx.storage.state_dir / "jobs" / name
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            _write_private(folder / "token", token)  # as is: clients use the file's content unstripped
            (folder / "resource-alias-map.json").write_text(json.dumps(alias_map, indent=2))
            env = {
                "BUILD2_TOKEN": str(folder / "token"),
                "RESOURCE_ALIAS_MAP": str(folder / "resource-alias-map.json"),
                "FOUNDRY_URL": foundry_url,
                "JOB_RID": job_rid,
            }
            if job.connector:
                env["CONNECTOR_SPEC"] = job.connector
            _write_private(folder / "env", "".join(f"{k}={v}\n" for k, v in env.items()))
            folders[name] = folder
        return folders

    def _branch(self, ref: str | Ref) -> str:
        name = ref.resource if isinstance(ref, Ref) else ref
        for specs in (self.stack.streams, self.stack.datasets):
            if name in specs:
                return str(specs[name].branch)
        return "master"
