"""In-memory wake-ups between requests: a queued job wakes its runtime's long-polls, a finished job its callers.

Only wake-ups live here; every state change is in the store first, so a restarted fake loses no job, only
the waiting connections (which their clients retry).
"""

from __future__ import annotations

import asyncio


class Hub:
    def __init__(self) -> None:
        self.closing = False
        self._queued: dict[str, asyncio.Event] = {}
        self._finished: dict[str, asyncio.Event] = {}
        self._removed: dict[str, str] = {}

    def queued_event(self, runtime_id: str) -> asyncio.Event:
        """Take this before looking for a job: a job queued after the look sets it."""
        return self._queued.setdefault(runtime_id, asyncio.Event())

    def queued(self, runtime_id: str) -> None:
        event = self._queued.pop(runtime_id, None)
        if event is not None:
            event.set()

    def close(self) -> None:
        """The fake is stopping: answer every held poll and waiting caller now."""
        self.closing = True
        for event in [*self._queued.values(), *self._finished.values()]:
            event.set()

    def finish(self, job_id: str, *, removed_because: str | None = None) -> None:
        if removed_because is not None:
            self._removed[job_id] = removed_because
        event = self._finished.pop(job_id, None)
        if event is not None:
            event.set()

    async def wait_finished(self, job_id: str, timeout_s: float) -> str | None:
        """Until the job finished or `timeout_s`; returns why it was removed (a reset), else None."""
        event = self._finished.setdefault(job_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            self._finished.pop(job_id, None)
        return self._removed.pop(job_id, None)
