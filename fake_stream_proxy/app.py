"""Assembles the fake: shared context, middleware, and one `setup` per Foundry service module."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from . import admin, datasets, legacy, media_sets, streams
from .auth import Auth, now_iso
from .errors import error_middleware
from .provenance import Provenance
from .storage import Storage

# Request bodies larger than this get a 413 envelope (aiohttp enforces it while reading).
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024

ResourceCreator = Callable[["FakeContext", dict[str, Any]], dict[str, Any]]


@dataclass
class FakeContext:
    """Everything a service module needs; reachable from a handler as `request.app[CONTEXT]`."""

    storage: Storage
    auth: Auth
    provenance: Provenance
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # type ("stream" | "dataset" | "media_set") -> function creating that resource from an admin request.
    resource_creators: dict[str, ResourceCreator] = field(default_factory=dict)

    def insert_resource(self, rid: str, type_: str, name: str, parent_folder_rid: str | None = None) -> None:
        self.storage.execute(
            "INSERT INTO resources (rid, type, name, parent_folder_rid, created_time) VALUES (?, ?, ?, ?, ?)",
            (rid, type_, name, parent_folder_rid, now_iso()),
        )

    def resource_type(self, rid: str) -> str | None:
        row = self.storage.one("SELECT type FROM resources WHERE rid = ?", (rid,))
        return None if row is None else str(row["type"])


CONTEXT = web.AppKey("fake_context", FakeContext)


def new_rid(kind: str) -> str:
    """`kind` like "foundry.main.dataset" or "mio.main.media-set"."""
    return f"ri.{kind}.{uuid.uuid4()}"


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
    for module in (admin, streams, legacy, datasets, media_sets):
        module.setup(app, ctx)

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
