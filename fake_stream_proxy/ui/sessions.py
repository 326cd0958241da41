"""Web page log-ins: the admin token is exchanged once for a session id, which is all the cookie holds.

The token itself never goes into a cookie (a cookie leaks into logs, screenshots and shared browser
profiles; a session id dies with the fake). One-time codes let a tool hand a person a link that logs in
once (`/?login=CODE`) without showing the token. Both live in memory only: a restarted fake asks again.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

SESSION_TTL_S = 12 * 3600.0
CODE_TTL_S = 10 * 60.0
MAX_LIVE = 1000  # sessions or codes kept at once; the oldest go first (a local fake has few users)


class Sessions:
    def __init__(self, admin_token: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.admin_token = admin_token
        self.clock = clock
        self._sessions: dict[str, float] = {}  # session id -> expiry
        self._codes: dict[str, float] = {}  # one-time code -> expiry

    def login(self, token: str) -> str | None:
        """A new session id for the admin token; None for anything else."""
        if not token or not secrets.compare_digest(token.encode(), self.admin_token.encode()):
            return None
        return self._issue(self._sessions, SESSION_TTL_S)

    def new_code(self) -> str:
        return self._issue(self._codes, CODE_TTL_S)

    def redeem(self, code: str) -> str | None:
        """A new session id for an unused, unexpired code, which is then spent; None otherwise."""
        expiry = self._codes.pop(code, None)
        if expiry is None or expiry < self.clock():
            return None
        return self._issue(self._sessions, SESSION_TTL_S)

    def valid(self, session_id: str | None) -> bool:
        expiry = self._sessions.get(session_id or "")
        if expiry is None:
            return False
        if expiry < self.clock():
            del self._sessions[session_id or ""]
            return False
        return True

    def logout(self, session_id: str | None) -> None:
        self._sessions.pop(session_id or "", None)

    def _issue(self, live: dict[str, float], ttl_s: float) -> str:
        now = self.clock()
        for key in [k for k, expiry in live.items() if expiry < now]:
            del live[key]
        while len(live) >= MAX_LIVE:
            del live[next(iter(live))]
        value = secrets.token_urlsafe(32)
        live[value] = now + ttl_s
        return value
