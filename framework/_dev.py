"""`connector dev package.module:Class`: from a class to a running local job in one command, with live progress.

It starts the fake (or uses a running one), creates every resource the class declares (stream schemas from
the handles' models) and a job scoped to them, optionally publishes JSON lines into an input, and runs
`connector run` as a child process with exactly Foundry's environment. Progress is drawn from the child's
own progress events and the streams' end offsets; Ctrl-C stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ._connector import Connector
from ._errors import ConfigError
from ._handles import Handle, declared_resources
from ._streams.schema import stream_schema
from .testing import FakeFoundry, Job, fake_process

_CHILD_ENV = {"CONNECTOR_LOG_FORMAT": "json", "CONNECTOR_PROGRESS_INTERVAL_S": "1"}


@dataclass
class Progress:
    """What the display shows, updated from the child's log lines and the fake's end offsets."""

    handles: list[Handle]
    totals: dict[str, int] = field(default_factory=dict)  # records in each stream, from the fake
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # the child's latest progress event
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_error: str | None = None
    restarts: int = 0
    exit_code: int | None = None

    def take(self, line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            self.last_error = line.strip()[:200] or self.last_error
            return
        if not isinstance(event, dict):
            return
        if event.get("event") == "progress":
            self.inputs, self.outputs = event.get("inputs") or {}, event.get("outputs") or {}
        elif event.get("level") in ("error", "critical"):
            self.last_error = f"{event.get('event')}: {event.get('error', '')}".strip(": ")

    def rows(self) -> list[list[str]]:
        rows = []
        for h in self.handles:
            seen = (self.inputs if h.direction == "input" else self.outputs).get(h.alias, {})
            bad = seen.get("invalid", seen.get("rejected", ""))
            rows.append(
                [h.alias, h.kind, h.direction, str(self.totals.get(h.alias, "")), str(seen.get("records", "")),
                 str(seen.get("per_s", "")), str(seen.get("lag", "") if seen.get("lag") is not None else ""), str(bad)]
            )  # fmt: skip
        return rows

    def plain(self) -> str:
        parts = [f"{r[0]} {r[2]}: {r[4] or 0} records ({r[5] or 0}/s)" + (f", lag {r[6]}" if r[6] else "")
                 for r in self.rows()]  # fmt: skip
        restarts = f" | restarted {self.restarts}x on source changes" if self.restarts else ""
        return "; ".join(parts) + restarts + (f" | last error: {self.last_error}" if self.last_error else "")


COLUMNS = ["alias", "kind", "direction", "in stream", "processed", "per s", "lag", "invalid"]


async def _resources(foundry: FakeFoundry, cls: type[Connector]) -> tuple[dict[str, str], list[Handle]]:
    """Every declared handle's resource, found again by name or created (streams from their models)."""
    existing = {(r["type"], r["name"]): r["rid"] for r in (await foundry.call("GET", "/_fake/resources"))["data"]}
    rids: dict[str, str] = {}
    handles = list(declared_resources(cls).values())
    for h in handles:
        if (h.kind, h.alias) in existing:
            rids[h.alias] = existing[(h.kind, h.alias)]
        elif h.kind == "stream":
            model = getattr(h, "model", None) if _has_model(h) else None
            schema = stream_schema(model) if model is not None else None
            rids[h.alias] = await foundry.create_stream(h.alias, schema=schema, partitions=1)
        elif h.kind == "dataset":
            rids[h.alias] = await foundry.create_dataset(h.alias)
        else:
            rids[h.alias] = await foundry.create_media_set(h.alias, transactional=bool(getattr(h, "transactional", 0)))
    return rids, handles


async def _job(foundry: FakeFoundry, state_dir: Path, inputs: dict[str, str], outputs: dict[str, str]) -> Job:
    """The same job as last time when its declaration is unchanged: its subscribers (and positions) are its own."""
    saved = state_dir / "dev-job.json"
    declaration = {"inputs": inputs, "outputs": outputs}
    with contextlib.suppress(OSError, ValueError, KeyError):
        previous = json.loads(saved.read_text())
        if previous["declaration"] == declaration:
            return foundry.job_files(previous["job"])
    created = await foundry.call("POST", "/_fake/jobs", json=declaration)
    saved.write_text(json.dumps({"declaration": declaration, "job": created}))
    saved.chmod(0o600)
    return foundry.job_files(created)


def _has_model(handle: Handle) -> bool:
    try:
        return getattr(handle, "model", None) is not None
    except ConfigError:
        return False


@contextlib.asynccontextmanager
async def _foundry(state_dir: Path, url: str | None, token: str | None) -> AsyncIterator[FakeFoundry]:
    if url:
        if not token:
            raise ConfigError("--fake-url needs --admin-token (the fake prints it, and keeps it in DIR/admin-token)")
        async with FakeFoundry(state_dir, url=url, admin_token=token) as foundry:
            yield foundry
    else:
        async with fake_process(state_dir) as foundry:
            yield foundry


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"--publish {path}: cannot be read ({exc.strerror})") from exc
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                raise ConfigError(f"--publish {path}:{number}: not a JSON record") from None
    return records


async def _publish(foundry: FakeFoundry, rid: str, records: list[dict[str, Any]], source: Path | None) -> None:
    for start in range(0, len(records), 1000):
        path = foundry.stream_path(rid, "/publishRecords")
        status, body = await foundry.request("POST", path, json={"records": records[start : start + 1000]})
        if status >= 400:
            detail = body.get("parameters", {}).get("message") if isinstance(body, dict) else body
            raise ConfigError(f"--publish {source}: the stream refused the records ({status}): {detail}")


def _sources(cls: type) -> list[Path]:
    module = sys.modules.get(cls.__module__)
    origin = Path(getattr(module, "__file__", "") or ".")
    return sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]


def _mtimes(paths: list[Path]) -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in paths if p.exists()}


class Display:
    """A live table on a terminal (rich), one plain line per update otherwise."""

    def __init__(self, progress: Progress, *, tty: bool) -> None:
        self.progress = progress
        self.tty = tty
        self._live: Any = None

    def __enter__(self) -> Display:
        if self.tty:
            from rich.live import Live

            self._live = Live(self._table(), refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(None, None, None)

    def _table(self) -> Any:
        from rich.table import Table

        restarts = f" (restarted {self.progress.restarts}x)" if self.progress.restarts else ""
        table = Table(title=f"connector dev{restarts}", caption=f"last error: {self.progress.last_error or '-'}")
        for column in COLUMNS:
            table.add_column(column, justify="right" if column not in ("alias", "kind", "direction") else "left")
        for row in self.progress.rows():
            table.add_row(*row)
        return table

    def update(self) -> None:
        if self._live is not None:
            self._live.update(self._table())
        else:
            print(self.progress.plain(), flush=True)


async def _child(spec: str, environ: dict[str, str], progress: Progress) -> asyncio.subprocess.Process:
    env = {**os.environ, **environ, **_CHILD_ENV, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framework.cli", "run", spec, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches `connector dev`, which stops the connector, then the fake
    )  # fmt: skip

    async def pump() -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            progress.take(raw.decode(errors="replace"))

    asyncio.get_running_loop().create_task(pump())
    return process


async def _stop(process: asyncio.subprocess.Process, timeout_s: float = 30) -> int:
    """SIGTERM the connector and wait; dying of that SIGTERM (still starting up, no handler yet) is a clean stop."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            process.kill()
            await process.wait()
    code = int(process.returncode or 0)
    return 0 if code == -signal.SIGTERM else code


async def run_dev(
    cls: type[Connector],
    spec: str,
    *,
    state_dir: Path,
    fake_url: str | None = None,
    admin_token: str | None = None,
    publish: Path | None = None,
    reload: bool = False,
    exit_when_idle: bool = False,
    tty: bool | None = None,
) -> int:
    """The whole `connector dev` session; returns the exit code."""
    records = _read_jsonl(publish) if publish is not None else []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with _foundry(state_dir, fake_url, admin_token) as foundry:
        rids, handles = await _resources(foundry, cls)
        inputs = {h.alias: rids[h.alias] for h in handles if h.direction == "input"}
        outputs = {h.alias: rids[h.alias] for h in handles if h.direction == "output"}
        job = await _job(foundry, state_dir, inputs, outputs)
        if records:
            target = next((h.alias for h in handles if h.direction == "input" and h.kind == "stream"), None)
            if target is None:
                raise ConfigError(f"--publish: {cls.__name__} declares no stream input to publish into")
            await _publish(foundry, rids[target], records, publish)
        progress = Progress(handles)
        process = await _child(spec, job.environ, progress)
        watched = _mtimes(_sources(cls)) if reload else {}
        idle_since: float | None = None
        with Display(progress, tty=sys.stdout.isatty() if tty is None else tty) as display:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                try:
                    for h in handles:
                        if h.kind == "stream":
                            progress.totals[h.alias] = sum((await foundry.end_offsets(rids[h.alias])).values())
                except (aiohttp.ClientError, AssertionError) as exc:
                    raise ConfigError(f"the fake at {foundry.url} stopped answering ({type(exc).__name__})") from exc
                display.update()
                if process.returncode is not None and not reload:
                    progress.exit_code = process.returncode
                    break
                if reload and (now := _mtimes(_sources(cls))) != watched:
                    watched = now
                    await _stop(process)
                    progress.restarts += 1
                    progress.last_error = None
                    process = await _child(spec, job.environ, progress)
                done = all(
                    (seen.get("lag") == 0) for seen in progress.inputs.values()
                ) and bool(progress.inputs)  # fmt: skip
                idle_since = (idle_since or time.monotonic()) if done else None
                if exit_when_idle and idle_since is not None and time.monotonic() - idle_since >= 1.5:
                    break
        code = await _stop(process) if process.returncode is None else int(process.returncode)
        for alias, rid in outputs.items():
            if next(h for h in handles if h.alias == alias).kind == "stream":
                latest = (await foundry.records(rid))[-5:]
                print(f"{alias}: {progress.totals.get(alias, 0)} records; latest: "
                      + ", ".join(json.dumps(r["value"]) for r in latest))  # fmt: skip
        print(f"job files: {Path(job.environ['BUILD2_TOKEN']).parent}")
    return code
