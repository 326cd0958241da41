"""One way to register routes: each service's routes.py returns route tables, app.py registers them all."""

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


# A service: builds its store(s) and handlers over the shared context, registers its admin resource
# creators, and returns its route tables. app.py lists one per service folder.
Service = Callable[[FakeContext], list[RouteTable]]


def register(app: web.Application, tables: Iterable[RouteTable]) -> None:
    for table in tables:
        for method, path, handler in table.routes:
            for base in table.bases:
                if method == "GET" and table.head:
                    app.router.add_get(base + path, handler)
                else:
                    app.router.add_route(method, base + path, handler)
