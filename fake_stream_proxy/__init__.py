"""A local Foundry: stream-proxy, datasets and media sets over HTTP, with scoped job tokens and provenance."""

from .app import FakeServer, create_app

__all__ = ["FakeServer", "create_app"]
