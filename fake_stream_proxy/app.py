"""Assembles the fake: the shared context, middleware, and every service's route tables.

Nothing imports this module but `__init__` and the CLI. A new service is a folder with routes.py,
handlers.py and store.py whose `routes.route_tables` is added to `SERVICES`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from . import admin
from .auth import Auth
from .catalog import routes as catalog
from .compute_modules import routes as compute_modules
from .context import CONTEXT, DEFAULT_MAX_BODY_BYTES, FakeContext, FakeOptions
from .datasets import routes as datasets
from .deadlines import runner_settings, stall_middleware
from .errors import error_middleware
from .faults import routes as faults
from .faults.middleware import fault_middleware
from .media_sets import routes as media_sets
from .provenance import Provenance
from .routing import Service, register
from .stack import Stack, load_stack
from .storage import Storage, private_dir
from .streams import routes as streams
from .tls import ensure_tls
from .ui import routes as ui

SERVICES: tuple[Service, ...] = (
    admin.route_tables,
    streams.route_tables,
    datasets.route_tables,
    media_sets.route_tables,
    compute_modules.route_tables,
    catalog.route_tables,
    faults.route_tables,
    ui.route_tables,
)


def load_admin_token(state_dir: Path, admin_token: str | None) -> str:
    """Explicit token wins; else reuse DIR/admin-token so a restarted fake keeps the same one.

    The file is created owner-only (never world-readable, not even between create and chmod).
    """
    path = state_dir / "admin-token"
    if admin_token:
        token = admin_token
    elif path.exists():
        token = path.read_text().strip()
    else:
        token = secrets.token_urlsafe(24)
    private_dir(state_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    path.chmod(0o600)
    return token


def create_app(
    state_dir: Path,
    admin_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    *,
    options: FakeOptions | None = None,
) -> web.Application:
    options = options or FakeOptions(max_body_bytes=max_body_bytes)
    storage = Storage(state_dir)
    token = load_admin_token(Path(state_dir), admin_token)
    ctx = FakeContext(storage, Auth(storage, token), Provenance(storage), options)
    # Outermost first: faults see the answers a client would; a stalled body's 408 is not faulted.
    middlewares = [stall_middleware(options.read_timeout_s), fault_middleware(ctx), error_middleware]
    app = web.Application(middlewares=middlewares, client_max_size=options.max_body_bytes)
    app[CONTEXT] = ctx
    for service in SERVICES:
        register(app, service(ctx))

    async def close_storage(_: web.Application) -> None:
        storage.close()

    async def shutdown(_: web.Application) -> None:
        for hook in ctx.shutdown_hooks:
            hook()

    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(close_storage)
    return app


def apply_seed(ctx: FakeContext, seed: dict[str, Any]) -> None:
    """The seed config's `foundry:` sections, each applied by the service that owns it (idempotently)."""
    sections = seed.get("foundry", seed)
    if not isinstance(sections, dict):
        raise ValueError("the seed config must be a mapping with a `foundry:` key")
    unknown = sorted(set(sections) - set(ctx.seeders))
    if unknown:
        raise ValueError(f"unknown seed section(s) {', '.join(unknown)}; known: {', '.join(sorted(ctx.seeders))}")
    for name, section in sections.items():
        ctx.seeders[name](section or {})


class FakeServer:
    """The fake on 127.0.0.1 inside the current event loop: `async with FakeServer(dir) as fake: fake.url`.

    Serves plain http on `port` and, unless `https_port` is None, https on `https_port` (0: a free one) with a
    certificate from its own CA (`ca_path`), for function-mode modules. Restartable (`await fake.restart()`)
    on the same ports and state dir, for durability tests.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_token: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        https_port: int | None = 0,
        poll_hold_s: float = 20.0,
        sync_timeout_s: float = 30.0,
        read_timeout_s: float = 30.0,
        seed: dict[str, Any] | None = None,
        stack: Path | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.https_port = https_port
        self.options = FakeOptions(
            max_body_bytes, poll_hold_s=poll_hold_s, sync_timeout_s=sync_timeout_s, read_timeout_s=read_timeout_s
        )
        self.seed = seed
        self.stack = stack
        self.job_folders: dict[str, Path] = {}  # stack job name -> folder with its token, alias map and env
        self.admin_token = load_admin_token(self.state_dir, admin_token)
        self.ca_path: Path | None = None
        self._runner: web.AppRunner | None = None

    @property
    def max_body_bytes(self) -> int:
        return self.options.max_body_bytes

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def https_url(self) -> str | None:
        return None if self.https_port is None else f"https://{self.host}:{self.https_port}"

    async def start(self) -> None:
        app = create_app(self.state_dir, self.admin_token, options=self.options)
        ctx = app[CONTEXT]
        if self.seed:
            apply_seed(ctx, self.seed)
        stack = Stack(ctx, load_stack(self.stack)) if self.stack is not None else None
        rids = stack.apply() if stack is not None else {}  # raises StackError before anything is served
        self._runner = web.AppRunner(app, access_log=None, **runner_settings(self.options.read_timeout_s))
        await self._runner.setup()
        self.port = await self._listen(web.TCPSite(self._runner, self.host, self.port, reuse_address=True))
        if self.https_port is not None:
            tls = ensure_tls(self.state_dir)
            site = web.TCPSite(
                self._runner, self.host, self.https_port, ssl_context=tls.server_context(), reuse_address=True
            )
            self.https_port = await self._listen(site)
            self.ca_path = tls.ca
        ctx.url, ctx.https_url, ctx.ca_path = self.url, self.https_url, self.ca_path
        if stack is not None:
            self.job_folders = stack.write_jobs(rids, self.url)

    @staticmethod
    async def _listen(site: web.TCPSite) -> int:
        await site.start()
        server = site._server
        assert server is not None
        return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

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
