"""One way to declare and register routes: each service's routes.py returns route tables, app.py registers them.

A table is text, one `METHOD PATH HANDLER` row per route, read like the API reference; HANDLER names a
method of the service's handlers object, resolved when the app is built, so a typo fails at start-up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from .context import FakeContext

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Route = tuple[str, str, Handler]  # (method, path below each base, handler)


@dataclass(frozen=True)
class RouteTable:
    """Routes served under every one of `bases` (streams answer at both `/api` and `/stream-proxy/api`).

    `head`: also answer HEAD on GET routes. The stream routes never did, the others always did; kept so.
    """

    bases: tuple[str, ...]
    routes: list[Route]
    head: bool = True


def table(bases: tuple[str, ...], handlers: object, rows: str, *, prefix: str = "", head: bool = True) -> RouteTable:
    """`rows`: lines of `METHOD PATH HANDLER`; each PATH is below `prefix`, which is below each base."""
    routes: list[Route] = []
    for row in rows.strip().splitlines():
        method, path, name = row.split()
        handler = getattr(handlers, name)
        if not callable(handler):
            raise TypeError(f"{type(handlers).__name__}.{name} is not a handler")
        routes.append((method, prefix + path, handler))
    return RouteTable(bases, routes, head)


# A service: builds its store(s) and handlers over the shared context, registers its admin resource
# creators, and returns its route tables. app.py lists one per service folder.
Service = Callable[[FakeContext], list[RouteTable]]


def register(app: web.Application, tables: Iterable[RouteTable]) -> None:
    for route_table in tables:
        for method, path, handler in route_table.routes:
            for base in route_table.bases:
                if method == "GET" and route_table.head:
                    app.router.add_get(base + path, handler)
                else:
                    app.router.add_route(method, base + path, handler)
