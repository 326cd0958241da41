"""`GET /`: the web page; `/_fake/ui/*`: its log-in, one-time links, static files and the JSON it polls."""

from __future__ import annotations

from ..context import FakeContext
from ..routing import RouteTable, table
from .handlers import UiHandlers
from .sessions import Sessions
from .store import UiStore

PAGE_ROUTES = """
    GET     /                   page
"""
UI_ROUTES = """
    POST    /login              login
    POST    /logout             logout
    POST    /links              new_link
    GET     /static/{name}      static
    GET     /overview           overview
    GET     /streams/{rid}      stream
    GET     /datasets/{rid}     dataset
    GET     /live               live
"""


def route_tables(ctx: FakeContext) -> list[RouteTable]:
    handlers = UiHandlers(ctx, UiStore(ctx), Sessions(ctx.auth.admin_token))
    return [table(("",), handlers, PAGE_ROUTES), table(("/_fake",), handlers, UI_ROUTES, prefix="/ui")]
