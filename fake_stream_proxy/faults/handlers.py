"""The fault API's handlers: admin only, thin over FaultStore."""

from __future__ import annotations

from aiohttp import web

from ..auth import Auth
from ..params import json_object
from .store import FaultStore


class FaultHandlers:
    def __init__(self, auth: Auth, store: FaultStore) -> None:
        self.auth = auth
        self.store = store

    async def add(self, request: web.Request) -> web.Response:
        self.auth.require_admin(request)
        return web.json_response(self.store.add(await json_object(request)).to_json())

    async def list(self, request: web.Request) -> web.Response:
        self.auth.require_admin(request)
        return web.json_response({"data": [rule.to_json() for rule in self.store.rules.values()]})

    async def get(self, request: web.Request) -> web.Response:
        self.auth.require_admin(request)
        return web.json_response(self.store.get(request.match_info["id"]).to_json())

    async def clear(self, request: web.Request) -> web.Response:
        self.auth.require_admin(request)
        return web.json_response({"removed": self.store.clear(request.query.get("jobRid") or None)})

    async def remove(self, request: web.Request) -> web.Response:
        self.auth.require_admin(request)
        self.store.remove(request.match_info["id"])
        return web.Response(status=204)
