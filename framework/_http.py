"""The one HTTP seam to Foundry: auth, retries, typed errors.

Everything that talks to Foundry goes through `FoundryClient`, so tests can point it at the fake or mock it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypedDict, TypeVar, Unpack

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_never, wait_full_jitter
from tenacity.wait import wait_base
from yarl import URL

from ._env.environment import Environment
from ._env.settings import RuntimeSettings
from ._errors import FoundryError, MalformedResponseError, RetryableError
from ._logging import get_logger, register_secret
from ._outage import Outage
from ._responses import CONNECTION_FAULTS, decode_json, decode_json_with, dumps, error_of, read_body

Service = Literal["api", "stream_proxy"]
ParamValue = str | int | float | bool | Sequence[str] | None
Params = Mapping[str, ParamValue]


class RequestOptions(TypedDict, total=False):
    """Keyword options of `request_json` / `request_bytes`: which service, query, JSON or bytes body, headers."""

    service: Service
    params: Params | None
    json: Any
    data: bytes | None
    headers: Mapping[str, str] | None


Body = bytes | Callable[[], AsyncIterable[bytes]]

_T = TypeVar("_T")
_log = get_logger("framework.http")

_CONNECTION_FAULTS = CONNECTION_FAULTS


@dataclass(frozen=True)
class RetryPolicy:
    """Full-jitter exponential backoff: attempt n waits uniform(0, min(max, initial * 2**(n-1))).

    `max_attempts=0` retries without limit: what a running pipeline wants, since giving up turns an outage of
    Foundry into a crash loop. Only connection faults, timeouts, 429, 5xx and malformed answers are retried.
    """

    max_attempts: int = 8
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 10.0

    @classmethod
    def from_runtime(cls, rt: RuntimeSettings, *, default_attempts: int = 8) -> RetryPolicy:
        """CONNECTOR_RETRY_* settings; `default_attempts` when CONNECTOR_RETRY_MAX_ATTEMPTS is unset (each
        command has its own: `connector run` 0 = unlimited, `connector check` 3)."""
        attempts = rt.retry_max_attempts if rt.retry_max_attempts is not None else default_attempts
        return cls(attempts, rt.retry_initial_backoff_s, rt.retry_max_backoff_s)

    @property
    def unlimited(self) -> bool:
        return self.max_attempts == 0


@dataclass
class ClientMetrics:
    """Counts since the client was made: every HTTP exchange, each retry, and responses by status."""

    requests: int = 0
    retries: int = 0
    token_refreshes: int = 0
    connection_errors: int = 0
    by_status: Counter[int] = field(default_factory=Counter)


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, (RetryableError, *_CONNECTION_FAULTS))


class _wait_retry_after(wait_base):
    """The server's Retry-After when it gave one (capped), else the fallback backoff."""

    def __init__(self, fallback: wait_base, cap_s: float) -> None:
        self.fallback = fallback
        self.cap_s = cap_s

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome is not None else None
        retry_after = getattr(exc, "retry_after_s", None)
        if isinstance(retry_after, int | float):
            return max(0.0, min(float(retry_after), self.cap_s))
        return self.fallback(retry_state)


def encode_params(params: Params | None) -> list[tuple[str, str]]:
    """Booleans as true/false, sequences as repeated keys, None dropped (Foundry's query conventions)."""
    out: list[tuple[str, str]] = []
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            out.append((key, "true" if value else "false"))
        elif isinstance(value, str | int | float):
            out.append((key, str(value)))
        else:
            out.extend((key, str(item)) for item in value)
    return out


class FoundryClient:
    """Shared session, bearer token from BUILD2_TOKEN (re-read once after a 401), retries, typed errors."""

    def __init__(
        self,
        env: Environment,
        *,
        retry: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.env = env
        self.retry = retry or RetryPolicy.from_runtime(env.runtime)
        seconds = timeout_s if timeout_s is not None else env.runtime.http_timeout_s
        # Per read, not total: large downloads may take long, a stalled socket may not.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)
        self._ssl = env.ssl_context()
        self._session = session
        self._owns_session = session is None
        self._token: str | None = None
        self._metrics = ClientMetrics()
        #: Whether Foundry is unavailable now (and since when): logged in a few lines, scraped by /metrics.
        self.outage = Outage(env.runtime.outage_report_s)
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests swap this to observe waits

    async def __aenter__(self) -> FoundryClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    @property
    def metrics(self) -> ClientMetrics:
        return self._metrics

    def url(self, path: str, service: Service = "api") -> str:
        base = self.env.stream_proxy_base if service == "stream_proxy" else self.env.api_base
        return f"{base}{path if path.startswith('/') else '/' + path}"

    # ------------------------------------------------------------------------------------------------ requests

    async def request_json(self, method: str, path: str, **options: Unpack[RequestOptions]) -> Any:
        """Parsed JSON; None for 204 or an empty body; the raw bytes when the body is not JSON."""
        return await self._request(method, path, decode_json, options)

    async def request_parsed(
        self, method: str, path: str, fast: Callable[[bytes], Any], **options: Unpack[RequestOptions]
    ) -> Any:
        """`request_json`, with a JSON body read by `fast` first; what `fast` refuses (a ValueError) is read as
        `request_json` reads it (see `decode_json_with`)."""
        return await self._request(method, path, decode_json_with(fast), options)

    async def request_bytes(self, method: str, path: str, **options: Unpack[RequestOptions]) -> bytes:
        """The raw body, whatever its content type."""
        return await self._request(method, path, read_body, options)

    async def _request(
        self, method: str, path: str, read: Callable[[aiohttp.ClientResponse], Awaitable[_T]], options: RequestOptions
    ) -> _T:
        body = _Payload(json=options.get("json"), data=options.get("data"))
        service, params, headers = options.get("service", "api"), options.get("params"), options.get("headers")

        async def call() -> _T:
            async with self._open(method, path, service, params, headers, body) as resp:
                return await read(resp)

        return await self._retrying(method, path, call)

    async def upload(
        self,
        method: str,
        path: str,
        *,
        body: Body,
        service: Service = "api",
        params: Params | None = None,
        content_type: str = "application/octet-stream",
    ) -> Any:
        """Send raw bytes; a callable body is called again for every attempt so streamed uploads can retry."""
        payload = _Payload(data=body) if isinstance(body, bytes) else _Payload(factory=body)

        async def call() -> Any:
            async with self._open(method, path, service, params, {"Content-Type": content_type}, payload) as resp:
                return await decode_json(resp)

        return await self._retrying(method, path, call)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        service: Service = "api",
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A response whose body the caller reads (`resp.content.iter_chunked`); retries cover getting it."""
        stack = contextlib.AsyncExitStack()

        async def call() -> aiohttp.ClientResponse:
            return await stack.enter_async_context(self._open(method, path, service, params, headers, _Payload()))

        async with stack:
            yield await self._retrying(method, path, call)

    # ------------------------------------------------------------------------------------------------ internals

    async def _retrying(self, method: str, path: str, call: Callable[[], Awaitable[_T]]) -> _T:
        policy = self.retry
        where = {"method": method, "path": path.split("?", 1)[0]}

        def log_retry(state: RetryCallState) -> None:
            self._metrics.retries += 1
            exc = state.outcome.exception() if state.outcome is not None else None
            cause: dict[str, Any] = (
                {"status": exc.status} if isinstance(exc, FoundryError) else {"error": type(exc).__name__}
            )
            if isinstance(exc, MalformedResponseError):
                # Not a network fault but a broken answer: worth a warning each time it happens.
                cause["error"] = str(exc.parameters.get("problem", ""))
                _log.warning("Foundry answered with a malformed body; retrying", **where, **cause)
            wait = state.next_action.sleep if state.next_action is not None else None
            # A transient fault is a debug line; an outage is a few warnings however long it lasts (`Outage`).
            _log.debug(
                "retrying Foundry request",
                **where,
                attempt=state.attempt_number,
                max_attempts=policy.max_attempts or None,
                wait_s=round(wait, 3) if wait is not None else None,
                **cause,
            )
            self.outage.failed(state.attempt_number, state.seconds_since_start or 0.0, {**where, **cause})

        async def attempt() -> _T:
            try:
                result = await call()
            except FoundryError as exc:
                if not _is_retryable(exc):
                    self.outage.succeeded()  # Foundry answered, if only with an error
                raise
            self.outage.succeeded()
            return result

        retrying = AsyncRetrying(
            stop=stop_never if policy.unlimited else stop_after_attempt(max(1, policy.max_attempts)),
            wait=_wait_retry_after(
                wait_full_jitter(multiplier=policy.initial_backoff_s, max=policy.max_backoff_s), policy.max_backoff_s
            ),
            retry=retry_if_exception(_is_retryable),
            before_sleep=log_retry,
            sleep=lambda seconds: self._sleep(seconds),
            reraise=True,
        )
        async for attempt_state in retrying:
            with attempt_state:
                return await attempt()
        raise AssertionError("unreachable: tenacity reraises the last error")

    @contextlib.asynccontextmanager
    async def _open(
        self,
        method: str,
        path: str,
        service: Service,
        params: Params | None,
        headers: Mapping[str, str] | None,
        payload: _Payload,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One attempt: send (again once with a re-read token after a 401), raise the typed error on >= 400."""
        url = URL(self.url(path, service), encoded=True)
        query = encode_params(params)
        refreshed = False
        while True:
            resp = await self._send(method, url, query, headers, payload)
            if resp.status == 401 and not refreshed:
                resp.release()
                refreshed = True
                self._metrics.token_refreshes += 1
                self._token = None  # Foundry may have rotated the job token: read the file again
                continue
            break
        try:
            if resp.status >= 400:
                raise await error_of(resp, method, url)
            yield resp
        finally:
            resp.release()

    async def _send(
        self,
        method: str,
        url: URL,
        query: list[tuple[str, str]],
        headers: Mapping[str, str] | None,
        payload: _Payload,
    ) -> aiohttp.ClientResponse:
        all_headers = {**(headers or {}), "Authorization": f"Bearer {self._bearer()}"}
        kwargs: dict[str, Any] = {"params": query, "headers": all_headers, "timeout": self._timeout}
        if self._ssl is not None:
            kwargs["ssl"] = self._ssl
        if payload.json is not None:
            kwargs["json"] = payload.json
        elif payload.factory is not None:
            kwargs["data"] = payload.factory()
        elif payload.data is not None:
            kwargs["data"] = payload.data
        self._metrics.requests += 1
        try:
            resp = await self._get_session().request(method, url, **kwargs)
        except _CONNECTION_FAULTS:
            self._metrics.connection_errors += 1
            raise
        self._metrics.by_status[resp.status] += 1
        return resp

    def _bearer(self) -> str:
        if self._token is None:
            self._token = self.env.read_token()
            register_secret(self._token)
        return self._token

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True),
                timeout=self._timeout,
                json_serialize=dumps,
            )
        return self._session


@dataclass(frozen=True)
class _Payload:
    json: Any = None
    data: bytes | None = None
    factory: Callable[[], AsyncIterable[bytes]] | None = None
