"""Compute-module runtimes, deployed-app bindings, jobs and function schemas, durable in SQLite.

A job is `queued` -> `running` (handed to a poll) -> `succeeded` | `failed`. Waiting (long-polls, sync
callers) is the handlers' business; this store only changes state and says what changed.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from ..ids import now_iso
from ..storage import Storage
from .errors import invalid_token, job_not_found, no_binding, runtime_not_found

SCHEMA = """
CREATE TABLE IF NOT EXISTS cm_runtimes (
    runtime_id TEXT PRIMARY KEY,
    module_auth_token TEXT NOT NULL,
    connected INTEGER NOT NULL DEFAULT 0,
    last_poll_at TEXT,
    max_concurrent_tasks INTEGER NOT NULL DEFAULT 1,
    created_time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cm_deployed_apps (
    deployed_app_rid TEXT NOT NULL,
    branch TEXT NOT NULL,
    runtime_id TEXT NOT NULL,
    display_name TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (deployed_app_rid, branch)
);
CREATE TABLE IF NOT EXISTS cm_jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    runtime_id TEXT NOT NULL,
    deployed_app_rid TEXT,
    branch TEXT,
    query_type TEXT NOT NULL,
    query TEXT NOT NULL,             -- JSON
    source TEXT NOT NULL,            -- contour-sync | contour-async | runtime-direct
    status TEXT NOT NULL,            -- queued | running | succeeded | failed
    caller TEXT,                     -- who submitted it (admin, a user id)
    auth_header TEXT,
    temporary_credentials TEXT NOT NULL,
    result BLOB,
    failure TEXT,
    created_time TEXT NOT NULL,
    started_time TEXT,
    finished_time TEXT
);
CREATE INDEX IF NOT EXISTS cm_jobs_queue ON cm_jobs (runtime_id, status, seq);
CREATE TABLE IF NOT EXISTS cm_schemas (
    runtime_id TEXT NOT NULL,
    function_name TEXT NOT NULL,
    spec TEXT NOT NULL,
    PRIMARY KEY (runtime_id, function_name)
);
CREATE TABLE IF NOT EXISTS cm_user_tokens (
    token TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_time TEXT NOT NULL
);
"""

JobStatus = Literal["queued", "running", "succeeded", "failed"]
JobSource = Literal["contour-sync", "contour-async", "runtime-direct"]


@dataclass(frozen=True)
class Runtime:
    runtime_id: str
    module_auth_token: str
    connected: bool
    last_poll_at: str | None
    max_concurrent_tasks: int

    def to_json(self) -> dict[str, Any]:
        """The emulator's snake_case runtime record (concurrency is our extension, kept out of it)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "max_concurrent_tasks"}


@dataclass(frozen=True)
class Job:
    job_id: str
    runtime_id: str
    deployed_app_rid: str | None
    query_type: str
    query: Any
    source: str
    status: JobStatus
    caller: str | None
    auth_header: str | None
    temporary_credentials: str
    result: bytes | None
    failure: str | None
    created_time: str
    started_time: str | None
    finished_time: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        return cls(
            job_id=row["job_id"],
            runtime_id=row["runtime_id"],
            deployed_app_rid=row["deployed_app_rid"],
            query_type=row["query_type"],
            query=json.loads(row["query"]),
            source=row["source"],
            status=row["status"],
            caller=row["caller"],
            auth_header=row["auth_header"],
            temporary_credentials=row["temporary_credentials"],
            result=row["result"],
            failure=row["failure"],
            created_time=row["created_time"],
            started_time=row["started_time"],
            finished_time=row["finished_time"],
        )

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed")

    def envelope(self) -> dict[str, Any]:
        """What `GET .../job` hands the module."""
        return {
            "type": "computeModuleJobV1",
            "computeModuleJobV1": {
                "jobId": self.job_id,
                "queryType": self.query_type,
                "query": self.query,
                "temporaryCredentialsAuthToken": self.temporary_credentials,
                "authHeader": self.auth_header or "",
                "userId": self.caller or "",
            },
        }

    def to_json(self) -> dict[str, Any]:
        """The inspection view (`GET .../runtimes/{id}/jobs/{jobId}`)."""
        return {
            "job_id": self.job_id,
            "status": self.status,
            "query_type": self.query_type,
            "source": self.source,
            "result_body_utf8": None if self.result is None else self.result.decode("utf-8", errors="replace"),
            "failure": self.failure,
            "created_time": self.created_time,
            "started_time": self.started_time,
            "finished_time": self.finished_time,
        }


def _job_id() -> str:
    return f"foundry_job_{uuid.uuid4().hex}"


def failure_of(body: bytes) -> str | None:
    """The failure a posted result reports: one JSON object with an `exception` or `error` key; else None.

    A streamed body (`{"i": 0}{"i": 1}`) is not one JSON value, so it is a success.
    """
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if isinstance(value, dict):
        for key in ("exception", "error"):
            if key in value:
                return str(value[key])
    return None


class ComputeModuleStore:
    """One method per runtime or Contour action; raises `ComputeModuleError`s with the emulator's names."""

    def __init__(self, storage: Storage) -> None:
        storage.ensure_schema(SCHEMA)  # the tables exist before the first action
        self.storage = storage

    # Runtimes.

    def create_runtime(
        self,
        runtime_id: str,
        *,
        token: str | None = None,
        deployed_app_rid: str | None = None,
        branch: str | None = None,
        display_name: str | None = None,
        max_concurrent_tasks: int = 1,
    ) -> tuple[Runtime, list[str]]:
        """Create, or reset an existing runtime: its jobs and schemas are cleared, bindings replaced, new token.

        Returns the runtime and the ids of unfinished jobs the reset removed (their callers must be told).
        """
        token = token or f"foundry_module_auth_{secrets.token_hex(16)}"
        with self.storage.transaction():
            removed = [
                r["job_id"]
                for r in self.storage.query(
                    "SELECT job_id FROM cm_jobs WHERE runtime_id = ? AND status IN ('queued', 'running')", (runtime_id,)
                )
            ]
            self.storage.execute("DELETE FROM cm_jobs WHERE runtime_id = ?", (runtime_id,))
            self.storage.execute("DELETE FROM cm_schemas WHERE runtime_id = ?", (runtime_id,))
            self.storage.execute("DELETE FROM cm_deployed_apps WHERE runtime_id = ?", (runtime_id,))
            self.storage.execute(
                "INSERT INTO cm_runtimes (runtime_id, module_auth_token, max_concurrent_tasks, created_time)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (runtime_id) DO UPDATE SET module_auth_token = excluded"
                ".module_auth_token, connected = 0, last_poll_at = NULL, max_concurrent_tasks = excluded"
                ".max_concurrent_tasks",
                (runtime_id, token, max_concurrent_tasks, now_iso()),
            )
            if deployed_app_rid:
                self.bind_app(deployed_app_rid, runtime_id, branch=branch, display_name=display_name)
        return self.runtime(runtime_id), removed

    def bind_app(
        self,
        deployed_app_rid: str,
        runtime_id: str,
        *,
        branch: str | None = None,
        display_name: str | None = None,
        active: bool = True,
    ) -> None:
        self.storage.execute(
            "INSERT OR REPLACE INTO cm_deployed_apps (deployed_app_rid, branch, runtime_id, display_name, active)"
            " VALUES (?, ?, ?, ?, ?)",
            (deployed_app_rid, branch or "master", runtime_id, display_name, int(active)),
        )

    def runtime(self, runtime_id: str) -> Runtime:
        row = self.storage.one("SELECT * FROM cm_runtimes WHERE runtime_id = ?", (runtime_id,))
        if row is None:
            raise runtime_not_found(runtime_id)
        return Runtime(
            runtime_id=row["runtime_id"],
            module_auth_token=row["module_auth_token"],
            connected=bool(row["connected"]),
            last_poll_at=row["last_poll_at"],
            max_concurrent_tasks=int(row["max_concurrent_tasks"]),
        )

    def authenticate(self, runtime_id: str, token: str | None) -> Runtime:
        runtime = self.runtime(runtime_id)
        if not token or not secrets.compare_digest(token, runtime.module_auth_token):
            raise invalid_token()
        return runtime

    def mark_polled(self, runtime_id: str) -> None:
        self.storage.execute(
            "UPDATE cm_runtimes SET connected = 1, last_poll_at = ? WHERE runtime_id = ?", (now_iso(), runtime_id)
        )

    def take_job(self, runtime_id: str) -> Job | None:
        """The oldest queued job of the runtime, now running; None when nothing is queued."""
        with self.storage.transaction():
            row = self.storage.one(
                "SELECT job_id FROM cm_jobs WHERE runtime_id = ? AND status = 'queued' ORDER BY seq LIMIT 1",
                (runtime_id,),
            )
            if row is None:
                return None
            self.storage.execute(
                "UPDATE cm_jobs SET status = 'running', started_time = ? WHERE job_id = ?", (now_iso(), row["job_id"])
            )
        return self.job(row["job_id"])

    def put_schemas(self, runtime_id: str, specs: dict[str, Any]) -> None:
        with self.storage.transaction():
            for name, spec in specs.items():
                self.storage.execute(
                    "INSERT OR REPLACE INTO cm_schemas (runtime_id, function_name, spec) VALUES (?, ?, ?)",
                    (runtime_id, name, json.dumps(spec)),
                )

    def schemas(self, runtime_id: str) -> list[Any]:
        rows = self.storage.query(
            "SELECT spec FROM cm_schemas WHERE runtime_id = ? ORDER BY function_name", (runtime_id,)
        )
        return [json.loads(r["spec"]) for r in rows]

    def post_result(self, runtime_id: str, job_id: str, body: bytes) -> Job:
        """Store a result; the job succeeds, or fails when the body reports a failure. A second post is ignored."""
        job = self.job(job_id)
        if job.runtime_id != runtime_id:
            raise job_not_found(job_id)
        if job.done:
            return job
        failure = failure_of(body)
        self.storage.execute(
            "UPDATE cm_jobs SET status = ?, result = ?, failure = ?, finished_time = ? WHERE job_id = ?",
            ("failed" if failure is not None else "succeeded", body, failure, now_iso(), job_id),
        )
        return self.job(job_id)

    def restarted(self, runtime_id: str) -> list[str]:
        """The module restarted: jobs it was running fail; queued ones stay. Returns the failed job ids."""
        with self.storage.transaction():
            ids = [
                r["job_id"]
                for r in self.storage.query(
                    "SELECT job_id FROM cm_jobs WHERE runtime_id = ? AND status = 'running'", (runtime_id,)
                )
            ]
            self.storage.execute(
                "UPDATE cm_jobs SET status = 'failed', failure = ?, finished_time = ?"
                " WHERE runtime_id = ? AND status = 'running'",
                ("runtime restarted while the job was running", now_iso(), runtime_id),
            )
        return ids

    # Jobs, as Contour submits them.

    def resolve_app(self, deployed_app_rid: str, branch: str | None) -> str:
        """The runtime bound to the app (on `branch`, else any active binding)."""
        if branch:
            row = self.storage.one(
                "SELECT runtime_id FROM cm_deployed_apps WHERE deployed_app_rid = ? AND branch = ? AND active = 1",
                (deployed_app_rid, branch),
            )
        else:
            row = self.storage.one(
                "SELECT runtime_id FROM cm_deployed_apps WHERE deployed_app_rid = ? AND active = 1"
                " ORDER BY branch = 'master' DESC, branch LIMIT 1",
                (deployed_app_rid,),
            )
        if row is None:
            raise no_binding(deployed_app_rid)
        return str(row["runtime_id"])

    def submit(
        self,
        runtime_id: str,
        query_type: str,
        query: Any,
        *,
        source: JobSource,
        deployed_app_rid: str | None = None,
        branch: str | None = None,
        caller: str | None = None,
        auth_header: str | None = None,
    ) -> Job:
        self.runtime(runtime_id)
        job_id = _job_id()
        self.storage.execute(
            "INSERT INTO cm_jobs (job_id, runtime_id, deployed_app_rid, branch, query_type, query, source, status,"
            " caller, auth_header, temporary_credentials, created_time)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
            (
                job_id,
                runtime_id,
                deployed_app_rid,
                branch,
                query_type,
                json.dumps(query),
                source,
                caller,
                auth_header,
                f"foundry_temp_creds_{secrets.token_hex(16)}",
                now_iso(),
            ),
        )
        return self.job(job_id)

    def job_counts(self, runtime_id: str) -> dict[str, int]:
        rows = self.storage.query(
            "SELECT status, COUNT(*) AS n FROM cm_jobs WHERE runtime_id = ? GROUP BY status", (runtime_id,)
        )
        return {str(r["status"]): int(r["n"]) for r in rows}

    def job(self, job_id: str) -> Job:
        row = self.storage.one("SELECT * FROM cm_jobs WHERE job_id = ?", (job_id,))
        if row is None:
            raise job_not_found(job_id)
        return Job.from_row(row)

    # Users who may call Contour (besides the admin).

    def issue_user_token(self, user_id: str) -> str:
        token = f"foundry_user_{secrets.token_hex(16)}"
        self.storage.execute(
            "INSERT INTO cm_user_tokens (token, user_id, created_time) VALUES (?, ?, ?)", (token, user_id, now_iso())
        )
        return token

    def user_of(self, token: str) -> str | None:
        row = self.storage.one("SELECT user_id FROM cm_user_tokens WHERE token = ?", (token,))
        return None if row is None else str(row["user_id"])
