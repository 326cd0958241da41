"""`GET /_fake/resources`, `GET /_fake/jobs`, `GET /_fake/lineage`: what the fake holds, for the CLI and the page."""

from __future__ import annotations

from ..context import FakeContext
from ..routing import RouteTable, table
from .handlers import CatalogHandlers

ROUTES = """
    GET     /resources      resources
    GET     /jobs           jobs
    GET     /lineage        lineage
    GET     /media-sets/{rid}/items   media_items
"""


def route_tables(ctx: FakeContext) -> list[RouteTable]:
    return [table(("/_fake",), CatalogHandlers(ctx), ROUTES)]
