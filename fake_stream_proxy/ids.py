"""Resource identifiers and timestamps in Foundry's formats.

A leaf module (it imports nothing of the fake), so auth, provenance and every store can share it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def new_rid(service: str, type_: str) -> str:
    """`ri.<service>.main.<type>.<uuid>`, e.g. `new_rid("mio", "media-set")`."""
    return f"ri.{service}.main.{type_}.{uuid.uuid4()}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
