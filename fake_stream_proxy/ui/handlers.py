"""The page, its log-in, and the JSON it polls. Read-only: no handler here changes Foundry state.

Who may look: a browser with a session cookie (from the admin token or a one-time link), or any client
sending the admin token as a bearer token. Everyone else gets the log-in form (the page) or a 401
envelope (the JSON endpoints), so nothing the fake holds is shown without the token.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources

from aiohttp import web

from ..auth import Auth, bearer_token, unauthorized
from ..context import FakeContext
from ..errors import ApiError
from ..ids import now_iso
from ..params import query_int
from . import views
from .sessions import CODE_TTL_S, SESSION_TTL_S, Sessions
from .store import LATEST_RECORDS, UiStore

COOKIE = "fake_ui_session"
# No inline script or style may run: escaped state is the first guard against record values, this the second.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a `?login=` code must not leak to another site
    "Cache-Control": "no-store",
}
MAX_LATEST = 100  # records per partition the stream JSON returns at most (more is asked with getRecords)
STATIC_TYPES = {"app.js": "text/javascript", "app.css": "text/css"}


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", headers=SECURITY_HEADERS)


def _login_form(message: str | None = None) -> web.Response:
    response = _html(views.login_page(message), status=401)
    response.headers["WWW-Authenticate"] = 'Bearer realm="fake-foundry"'
    return response


def _home() -> web.Response:
    return web.Response(status=303, headers={"Location": "/", **SECURITY_HEADERS})


class UiHandlers:
    def __init__(self, ctx: FakeContext, store: UiStore, sessions: Sessions) -> None:
        self.ctx = ctx
        self.auth: Auth = ctx.auth
        self.store = store
        self.sessions = sessions

    def _allowed(self, request: web.Request) -> bool:
        """A bearer token must be the admin's (else its 401/403 envelope); without one, the session cookie."""
        if bearer_token(request) is not None or "Authorization" in request.headers:
            self.auth.require_admin(request)
            return True
        return self.sessions.valid(request.cookies.get(COOKIE))

    def _require(self, request: web.Request) -> None:
        if not self._allowed(request):
            raise unauthorized()

    def _logged_in(self, session_id: str, request: web.Request) -> web.Response:
        response = _home()
        response.set_cookie(
            COOKIE, session_id, max_age=int(SESSION_TTL_S), path="/", httponly=True, samesite="Strict",
            secure=request.secure,
        )  # fmt: skip
        return response

    # The page

    async def page(self, request: web.Request) -> web.Response:
        code = request.query.get("login")
        if code is not None:
            session_id = self.sessions.redeem(code)
            if session_id is None:
                return _login_form("That log-in link was used already or has expired.")
            return self._logged_in(session_id, request)  # redirected, so the code leaves the address bar
        if not self._allowed(request):
            return _login_form()
        return _html(views.page(self._sections(request.query)))

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = form.get("token")
        session_id = self.sessions.login(token if isinstance(token, str) else "")
        if session_id is None:
            return _login_form("Wrong admin token.")
        return self._logged_in(session_id, request)

    async def logout(self, request: web.Request) -> web.Response:
        self.sessions.logout(request.cookies.get(COOKIE))
        response = _home()
        response.del_cookie(COOKIE, path="/")
        return response

    async def new_link(self, request: web.Request) -> web.Response:
        """A one-time log-in link, for a tool that has the token to hand a person who should not see it."""
        self.auth.require_admin(request)
        code = self.sessions.new_code()
        return web.json_response({"code": code, "url": f"{self.ctx.url}/?login={code}", "expiresInS": CODE_TTL_S})

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_TYPES:
            raise web.HTTPNotFound()
        body = (resources.files(__package__) / "static" / name).read_bytes()
        return web.Response(body=body, content_type=STATIC_TYPES[name], headers={"X-Content-Type-Options": "nosniff"})

    # JSON

    async def overview(self, request: web.Request) -> web.Response:
        self._require(request)
        return web.json_response(self.store.overview())

    async def stream(self, request: web.Request) -> web.Response:
        self._require(request)
        latest = min(query_int(request, "latest", LATEST_RECORDS, minimum=1), MAX_LATEST)
        found = self.store.stream(request.match_info["rid"], request.query.get("branch", "master"), latest)
        return web.json_response(found)

    async def dataset(self, request: web.Request) -> web.Response:
        self._require(request)
        found = self.store.dataset(request.match_info["rid"], request.query.get("branch", "master"))
        return web.json_response(found)

    async def live(self, request: web.Request) -> web.Response:
        """The page's sections for the same query as the page, re-rendered: the script swaps in what changed."""
        self._require(request)
        return web.json_response({"time": now_iso(), "sections": self._sections(request.query)})

    def _sections(self, query: Mapping[str, str]) -> dict[str, str]:
        overview = self.store.overview()
        render = views.OVERVIEW_SECTIONS
        sections = {"lineage": render["lineage"](overview), "streams": render["streams"](overview)}
        branch = query.get("branch", "master")
        if "stream" in query:
            sections["stream"] = self._detail(lambda: views.stream_detail(self.store.stream(query["stream"], branch)))
        if "dataset" in query:
            sections["dataset"] = self._detail(
                lambda: views.dataset_detail(self.store.dataset(query["dataset"], branch))
            )
        for name in ("resources", "jobs", "runtimes"):
            sections[name] = render[name](overview)
        return sections

    @staticmethod
    def _detail(render: views.Renderer) -> str:
        try:
            return render()
        except ApiError as exc:
            return views.not_found(exc.error_name)
