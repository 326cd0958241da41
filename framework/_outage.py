"""Outages of Foundry as the client sees them: a few log lines for an outage of any length, and its state.

Why a separate notion from a retry: with retries unlimited (`connector run`'s default) a long outage would
otherwise log one warning per attempt of every request in flight. A request that failed once or twice is a
transient fault (a debug line each). The third failure in a row of one request starts an outage: ONE warning,
then one "still unavailable" line every `report_every_s` while it lasts, and one line when any request
succeeds again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ._logging import get_logger

_log = get_logger("framework.http")

#: Consecutive failures of one request that make an outage (fewer are transient faults, logged at debug).
OUTAGE_AFTER_FAILURES = 3


def _duration(seconds: float) -> str:
    """`45s`, `2m`, `1h05m`: what an operator reads in "still unavailable for 2m"."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class Outage:
    """Whether Foundry is unavailable now, since when, and how many retries it took; logs its start and end."""

    def __init__(self, report_every_s: float = 120.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.report_every_s = report_every_s
        self._clock = clock
        self.since: float | None = None  # clock time of the first failure of the outage; None: no outage
        self.count = 0  # outages so far
        self.failures = 0  # failed attempts during the current outage
        self._reported_at = 0.0

    @property
    def active(self) -> bool:
        return self.since is not None

    def seconds(self) -> float:
        return 0.0 if self.since is None else self._clock() - self.since

    def failed(self, attempt: int, failing_for_s: float, cause: dict[str, Any]) -> None:
        """A request's attempt number `attempt` failed with a retryable fault, `failing_for_s` after its first."""
        now = self._clock()
        if self.since is None:
            if attempt < OUTAGE_AFTER_FAILURES:
                return
            self.since, self._reported_at, self.failures = now - failing_for_s, now, attempt
            self.count += 1
            _log.warning("Foundry unavailable: retrying until it answers", **cause)
            return
        self.failures += 1
        if now - self._reported_at >= self.report_every_s:
            self._reported_at = now
            _log.warning(
                f"Foundry still unavailable for {_duration(now - self.since)}",
                unavailable_s=round(now - self.since, 1),
                failed_attempts=self.failures,
                **cause,
            )

    def succeeded(self) -> None:
        if self.since is None:
            return
        took = self._clock() - self.since
        _log.warning(
            f"Foundry available again after {_duration(took)}",
            unavailable_s=round(took, 1),
            failed_attempts=self.failures,
        )
        self.since, self.failures = None, 0
