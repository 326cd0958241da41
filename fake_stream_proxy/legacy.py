"""Placeholder: filled in by its service implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .app import FakeContext


def setup(app: web.Application, ctx: FakeContext) -> None:
    pass
