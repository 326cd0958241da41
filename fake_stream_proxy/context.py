"""The state every service shares, built once by app.py: service modules import this, never app.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .auth import Auth
from .faults.store import FaultStore
from .provenance import Provenance
from .storage import Storage

# Request bodies larger than this get a 413 envelope (aiohttp enforces it while reading).
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024

# Creates a resource from a `POST /_fake/resources` body (inside a storage transaction); returns its JSON.
ResourceCreator = Callable[[dict[str, Any]], dict[str, Any]]


# Applies one section of the seed config (e.g. `compute_modules`) at start-up; must be idempotent.
Seeder = Callable[[dict[str, Any]], None]


# Resets (rid, branch)'s stream to a new empty view as `POST .../reset` does; registered by the streams service.
StreamReset = Callable[[str, str], object]


def _no_streams(rid: str, branch: str) -> object:
    raise RuntimeError("no streams service registered a stream reset")


@dataclass
class FakeOptions:
    """Tunables from the CLI or `FakeServer(...)`; tests shorten the waits."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    poll_hold_s: float = 20.0  # how long an empty compute-module job poll is held open
    sync_timeout_s: float = 30.0  # how long Contour's sync execute waits for a result
    read_timeout_s: float = 30.0  # how long request headers or a body may stall before 408 / close (deadlines.py)


@dataclass
class FakeContext:
    """What handlers share; each service builds its own store over `storage` when it makes its routes."""

    storage: Storage
    auth: Auth
    provenance: Provenance
    options: FakeOptions = field(default_factory=FakeOptions)
    # type ("stream" | "dataset" | "media_set") -> its creator, registered by the service that owns the type.
    resource_creators: dict[str, ResourceCreator] = field(default_factory=dict)
    # seed-config section -> its seeder, registered by the service that owns the section.
    seeders: dict[str, Seeder] = field(default_factory=dict)
    # Run when the fake stops, before in-flight requests are awaited (e.g. to answer held long-polls).
    shutdown_hooks: list[Callable[[], None]] = field(default_factory=list)
    # The fault rules the admin injected (faults/), and the stream reset their resetStream action uses.
    faults: FaultStore = field(default_factory=FaultStore)
    stream_reset: StreamReset = _no_streams
    # Where the fake listens, set once it does: plain http, and https with its local CA (function mode).
    url: str = ""
    https_url: str | None = None
    ca_path: Path | None = None

    @property
    def max_body_bytes(self) -> int:
        return self.options.max_body_bytes


CONTEXT = web.AppKey("fake_context", FakeContext)
