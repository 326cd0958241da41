"""Job tokens scoped to declared resources, and the admin token.

A job token may read its inputs, and read and write its outputs (a job owns its outputs: it must be
able to look up their schema, view and existing items). Anything else is a 403; a missing or unknown
token is a 401. The admin token may do anything and is what `/_fake/*` requires.

A job declaration is checked when it is made, so a mistake fails there and not at the job's first
write: each alias names an existing resource (400 `UnknownResource`) on a branch it has (400
`UnknownBranch`, checked by the service owning the type through `branch_checks`), and no output is also
an input (400 `OutputDeclaredAsInput`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from .errors import ApiError, permission_denied
from .ids import new_rid, now_iso
from .storage import Storage

Access = Literal["read", "write"]
# Whether resource `rid` has branch `branch`; each service registers one for the type it owns.
BranchCheck = Callable[[str, str], bool]

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_rid TEXT PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    created_time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS job_resources (
    job_rid TEXT NOT NULL REFERENCES jobs(job_rid),
    alias TEXT NOT NULL,
    rid TEXT NOT NULL,
    branch TEXT NOT NULL,
    direction TEXT NOT NULL,        -- input | output
    PRIMARY KEY (job_rid, alias)
);
"""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a job (scoped) or the admin (unscoped, job_rid None)."""

    job_rid: str | None

    @property
    def is_admin(self) -> bool:
        return self.job_rid is None


ADMIN = Principal(job_rid=None)
PRINCIPAL_KEY = web.RequestKey("fake_principal", Principal)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def unauthorized() -> ApiError:
    return ApiError(401, "Default:Unauthorized", message="missing, unknown or expired bearer token")


class Auth:
    def __init__(self, storage: Storage, admin_token: str) -> None:
        self.storage = storage
        self.admin_token = admin_token
        self.branch_checks: dict[str, BranchCheck] = {}
        storage.ensure_schema(SCHEMA)

    def authenticate(self, request: web.Request) -> Principal:
        """The caller, cached on the request; 401 envelope when the token is missing or unknown."""
        cached: Principal | None = request.get(PRINCIPAL_KEY)
        if cached is not None:
            return cached
        token = bearer_token(request)
        if token is None:
            raise unauthorized()
        if secrets.compare_digest(token, self.admin_token):
            principal = ADMIN
        else:
            row = self.storage.one("SELECT job_rid FROM jobs WHERE token = ?", (token,))
            if row is None:
                raise unauthorized()
            principal = Principal(job_rid=row["job_rid"])
        request[PRINCIPAL_KEY] = principal
        return principal

    def job_rid_of(self, request: web.Request) -> str | None:
        """The calling job's rid; None for the admin, or a missing or unknown token (never raises)."""
        try:
            return self.authenticate(request).job_rid
        except ApiError:
            return None

    def require_admin(self, request: web.Request) -> None:
        if not self.authenticate(request).is_admin:
            raise permission_denied("Default:PermissionDenied", message="this endpoint needs the admin token")

    def authorize(
        self,
        request: web.Request,
        rid: str,
        access: Access,
        *,
        denied: str,
        branch: str | None = None,
        status: int = 403,
        **params: Any,
    ) -> Principal:
        """Authenticate, then check `rid` (and `branch`, when given) is declared for this access.

        Otherwise `status` (403, or 404 where Foundry hides what a token may not see) with errorName
        `denied` and `params`: each service passes the parameters the SDK's typed error requires.
        """
        principal = self.authenticate(request)
        if not self.allows(principal, rid, access, branch):
            raise ApiError(status, denied, **params)
        return principal

    def allows(self, principal: Principal, rid: str, access: Access, branch: str | None = None) -> bool:
        """Whether `principal` may `access` `rid` (on `branch`, if given): read inputs and outputs, write outputs."""
        if principal.is_admin:
            return True
        rows = self.storage.query(
            "SELECT branch FROM job_resources WHERE job_rid = ? AND rid = ? AND (direction = 'output' OR ?)",
            (principal.job_rid, rid, access == "read"),
        )
        return bool(rows) and (branch is None or branch in {r["branch"] for r in rows})

    def create_job(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
        """Register a job; returns its rid, bearer token and the RESOURCE_ALIAS_MAP content."""
        job_rid = new_rid("foundry", "job")
        token = secrets.token_urlsafe(32)
        alias_map: dict[str, dict[str, str]] = {}
        rows: list[tuple[str, str, str, str, str]] = []
        inputs_by_ref: dict[tuple[str, str], str] = {}
        for direction, declared in (("input", inputs), ("output", outputs)):
            for alias, ref in declared.items():
                if alias in alias_map:
                    raise ApiError(400, "DuplicateAlias", alias=alias)
                rid, branch = _parse_ref(alias, ref)
                self._check_declared(alias, rid, branch)
                if direction == "input":
                    inputs_by_ref[(rid, branch)] = alias
                elif (rid, branch) in inputs_by_ref:
                    raise ApiError(
                        400, "OutputDeclaredAsInput", alias=alias, inputAlias=inputs_by_ref[(rid, branch)],
                        rid=rid, branch=branch, message="a job may not read the resource it writes",
                    )  # fmt: skip
                alias_map[alias] = {"rid": rid, "branch": branch}
                rows.append((job_rid, alias, rid, branch, direction))
        with self.storage.transaction():
            self.storage.execute(
                "INSERT INTO jobs (job_rid, token, created_time) VALUES (?, ?, ?)", (job_rid, token, now_iso())
            )
            self.storage.executemany(
                "INSERT INTO job_resources (job_rid, alias, rid, branch, direction) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        return {"jobRid": job_rid, "token": token, "resourceAliasMap": alias_map}

    def _check_declared(self, alias: str, rid: str, branch: str) -> None:
        row = self.storage.one("SELECT type FROM resources WHERE rid = ?", (rid,))
        if row is None:
            raise ApiError(400, "UnknownResource", alias=alias, rid=rid, message="no resource has this rid")
        check = self.branch_checks.get(str(row["type"]))
        if check is not None and not check(rid, branch):
            raise ApiError(
                400, "UnknownBranch", alias=alias, rid=rid, branch=branch, message="the resource has no such branch"
            )

    def job_resources(self, job_rid: str) -> dict[str, dict[str, dict[str, str]]]:
        result: dict[str, dict[str, dict[str, str]]] = {"inputs": {}, "outputs": {}}
        for row in self.storage.query(
            "SELECT alias, rid, branch, direction FROM job_resources WHERE job_rid = ? ORDER BY alias",
            (job_rid,),
        ):
            result[row["direction"] + "s"][row["alias"]] = {"rid": row["rid"], "branch": row["branch"]}
        return result


def _parse_ref(alias: str, ref: Any) -> tuple[str, str]:
    if isinstance(ref, str):
        return ref, "master"
    if isinstance(ref, dict) and isinstance(ref.get("rid"), str):
        branch = ref.get("branch") or "master"
        if not isinstance(branch, str):
            raise ApiError(400, "InvalidJobDeclaration", alias=alias, message="branch must be a string")
        return ref["rid"], branch
    raise ApiError(400, "InvalidJobDeclaration", alias=alias, message='expected a rid or {"rid", "branch"}')
