"""`framework.testing` for faults: make the fake misbehave like Foundry or its network does, from a test.

    await foundry.faults.add({"status": 503, "retryAfterS": 1}, path="*/publishRecords", next=3)
    await foundry.faults.add({"drop": "after"}, path="*/commitOffsets", rate=0.1, seed=7, job=job.rid)
    ...
    assert (await foundry.faults.list())[0]["fired"] == 3
    await foundry.faults.clear()

Actions: `{"status": 429|500|503|..., "retryAfterS"?, "errorName"?}`, `{"latencyMs": n}`, `{"drop": "before"|"after"}`,
`{"garbage": "not-json"|"truncated"}`, `{"expireToken": True}`, `{"resetStream": True}`. Limits: rules live in the
fake's memory (a restarted fake has none), `/_fake/*` is never faulted, and a held request cannot be released
on cue (latency is a fixed wait).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class _Admin(Protocol):
    async def call(self, method: str, path: str, **kwargs: Any) -> Any: ...


@dataclass
class Faults:
    """The fake's fault rules (`/_fake/faults`), as the admin."""

    foundry: _Admin

    async def add(
        self,
        action: dict[str, Any],
        *,
        path: str | None = None,
        path_regex: str | None = None,
        method: str | None = None,
        job: str | None = None,
        rate: float | None = None,
        next: int | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Add a rule; returns it with its `id`. `job` targets one job's token (its rid); `next` the next N hits."""
        match = {"path": path, "pathRegex": path_regex, "method": method, "jobRid": job}
        body: dict[str, Any] = {"action": action, "match": {k: v for k, v in match.items() if v is not None}}
        body |= {k: v for k, v in {"rate": rate, "next": next, "seed": seed}.items() if v is not None}
        rule: dict[str, Any] = await self.foundry.call("POST", "/_fake/faults", json=body)
        return rule

    async def list(self) -> list[dict[str, Any]]:
        """Every rule in the order added, with `matched` and `fired` counts."""
        rules: list[dict[str, Any]] = (await self.foundry.call("GET", "/_fake/faults"))["data"]
        return rules

    async def clear(self, *, job: str | None = None) -> int:
        """Remove every rule (or only `job`'s); returns how many were removed."""
        params = {"jobRid": job} if job else {}
        return int((await self.foundry.call("DELETE", "/_fake/faults", params=params))["removed"])
