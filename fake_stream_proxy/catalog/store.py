"""What the fake holds, read across the services' tables: resources, jobs and lineage from provenance.

Read-only: nothing here changes state, and job tokens are never listed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..storage import Storage


@dataclass(frozen=True)
class Resource:
    rid: str
    type: str
    name: str
    parent_folder_rid: str | None
    created_time: str

    def to_json(self) -> dict[str, Any]:
        """camelCase keys, like every Foundry answer."""
        return {_camel(k): v for k, v in dataclasses.asdict(self).items()}


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


class CatalogStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def resources(self, type_: str | None = None) -> list[Resource]:
        where, params = ("WHERE type = ?", (type_,)) if type_ else ("", ())
        rows = self.storage.query(f"SELECT * FROM resources {where} ORDER BY created_time, rid", params)
        return [Resource(r["rid"], r["type"], r["name"], r["parent_folder_rid"], r["created_time"]) for r in rows]

    def jobs(self) -> list[dict[str, Any]]:
        """Every job with its declared inputs and outputs by alias (no tokens)."""
        jobs: dict[str, dict[str, Any]] = {
            r["job_rid"]: {"jobRid": r["job_rid"], "createdTime": r["created_time"], "inputs": {}, "outputs": {}}
            for r in self.storage.query("SELECT job_rid, created_time FROM jobs ORDER BY created_time")
        }
        for r in self.storage.query("SELECT job_rid, alias, rid, branch, direction FROM job_resources ORDER BY alias"):
            if r["job_rid"] in jobs:
                jobs[r["job_rid"]][r["direction"] + "s"][r["alias"]] = {"rid": r["rid"], "branch": r["branch"]}
        return list(jobs.values())

    def runtimes(self) -> list[dict[str, Any]]:
        """Function-mode runtimes with their deployed apps and job counts by status (no module tokens)."""
        counts: dict[str, dict[str, int]] = {}
        rows = self.storage.query("SELECT runtime_id, status, COUNT(*) AS n FROM cm_jobs GROUP BY runtime_id, status")
        for r in rows:
            counts.setdefault(r["runtime_id"], {})[r["status"]] = int(r["n"])
        apps: dict[str, list[str]] = {}
        for r in self.storage.query("SELECT runtime_id, deployed_app_rid, branch FROM cm_deployed_apps WHERE active"):
            apps.setdefault(r["runtime_id"], []).append(f"{r['deployed_app_rid']}@{r['branch']}")
        rows = self.storage.query(
            "SELECT runtime_id, connected, last_poll_at, max_concurrent_tasks, created_time FROM cm_runtimes"
            " ORDER BY created_time, runtime_id"
        )
        return [
            {
                "runtimeId": r["runtime_id"],
                "connected": bool(r["connected"]),
                "lastPollAt": r["last_poll_at"],
                "maxConcurrentTasks": r["max_concurrent_tasks"],
                "createdTime": r["created_time"],
                "deployedApps": apps.get(r["runtime_id"], []),
                "jobs": counts.get(r["runtime_id"], {}),
            }
            for r in rows
        ]

    def lineage(self) -> dict[str, Any]:
        """input -> job -> output edges, each with its record count and last activity from provenance."""
        names = {r.rid: r for r in self.resources()}
        edges = []
        rows = self.storage.query(
            "SELECT job_rid, rid, direction, COALESCE(SUM(record_count), 0) AS records, COUNT(*) AS calls,"
            " MAX(time) AS last_time FROM provenance WHERE job_rid IS NOT NULL GROUP BY job_rid, rid, direction"
        )
        activity = {(r["job_rid"], r["rid"], r["direction"]): r for r in rows}
        for job in self.jobs():
            for direction, declared in (("read", job["inputs"]), ("write", job["outputs"])):
                for alias, ref in declared.items():
                    seen = activity.get((job["jobRid"], ref["rid"], direction))
                    resource = names.get(ref["rid"])
                    edges.append(
                        {
                            "jobRid": job["jobRid"],
                            "alias": alias,
                            "rid": ref["rid"],
                            "name": resource.name if resource else ref["rid"],
                            "type": resource.type if resource else None,
                            "direction": "input" if direction == "read" else "output",
                            "records": int(seen["records"]) if seen else 0,
                            "calls": int(seen["calls"]) if seen else 0,
                            "lastTime": seen["last_time"] if seen else None,
                        }
                    )
        return {"resources": [r.to_json() for r in names.values()], "jobs": self.jobs(), "edges": edges}
