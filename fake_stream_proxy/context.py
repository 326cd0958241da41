"""The state every service shares, built once by app.py: service modules import this, never app.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .auth import Auth
from .provenance import Provenance
from .storage import Storage

# Request bodies larger than this get a 413 envelope (aiohttp enforces it while reading).
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024

# Creates a resource from a `POST /_fake/resources` body (inside a storage transaction); returns its JSON.
ResourceCreator = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class FakeContext:
    """What handlers share; each service builds its own store over `storage` when it makes its routes."""

    storage: Storage
    auth: Auth
    provenance: Provenance
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # type ("stream" | "dataset" | "media_set") -> its creator, registered by the service that owns the type.
    resource_creators: dict[str, ResourceCreator] = field(default_factory=dict)


CONTEXT = web.AppKey("fake_context", FakeContext)
