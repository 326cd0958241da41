"""Assembles the fake: the shared context, middleware, and every service's route tables.

Nothing imports this module but `__init__` and the CLI. A new service is a folder with routes.py,
handlers.py and store.py whose `routes.route_tables` is added to `SERVICES`.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from types import TracebackType

from aiohttp import web

from . import admin
from .auth import Auth
from .context import CONTEXT, DEFAULT_MAX_BODY_BYTES, FakeContext
from .datasets import routes as datasets
from .errors import error_middleware
from .media_sets import routes as media_sets
from .provenance import Provenance
from .routing import Service, register
from .storage import Storage
from .streams import routes as streams

SERVICES: tuple[Service, ...] = (
    admin.route_tables,
    streams.route_tables,
    datasets.route_tables,
    media_sets.route_tables,
)


def load_admin_token(state_dir: Path, admin_token: str | None) -> str:
    """Explicit token wins; else reuse DIR/admin-token so a restarted fake keeps the same one."""
    path = state_dir / "admin-token"
    if admin_token:
        token = admin_token
    elif path.exists():
        token = path.read_text().strip()
    else:
        token = secrets.token_urlsafe(24)
    state_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def create_app(
    state_dir: Path, admin_token: str | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> web.Application:
    storage = Storage(state_dir)
    token = load_admin_token(Path(state_dir), admin_token)
    ctx = FakeContext(storage, Auth(storage, token), Provenance(storage), max_body_bytes)
    app = web.Application(middlewares=[error_middleware], client_max_size=max_body_bytes)
    app[CONTEXT] = ctx
    for service in SERVICES:
        register(app, service(ctx))

    async def close_storage(_: web.Application) -> None:
        storage.close()

    app.on_cleanup.append(close_storage)
    return app


class FakeServer:
    """The fake on 127.0.0.1 inside the current event loop: `async with FakeServer(dir) as fake: fake.url`.

    Restartable (`await fake.restart()`) on the same port and state dir, for durability tests.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_token: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.admin_token = load_admin_token(self.state_dir, admin_token)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = create_app(self.state_dir, self.admin_token, self.max_body_bytes)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def __aenter__(self) -> FakeServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
