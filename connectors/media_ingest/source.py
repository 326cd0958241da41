"""The external HTTP location `MediaIngest` copies from: configured like a Foundry REST source.

SOURCE_CONFIGURATIONS_PATH gives the source's `httpConnectionConfig` (`url`, optional `authHeaders` and
`queryParameters`); SOURCE_CREDENTIALS gives its API key (secret `apiKey`, which REST sources name
`additionalSecretApiKey`), sent in the `X-Api-Key` header (MEDIA_INGEST_API_KEY_HEADER). Every secret is
registered for log redaction as it is read, and nothing here logs a header, a query string or a body.

The location serves `GET <url>/index.json` (MEDIA_INGEST_INDEX_PATH), a JSON array describing its files:

    [{"path": "images/cat.png", "sha256": "<64 lowercase hex digits>", "size": 48213}, ...]

and each file at `GET <url>/<path>` (percent-encoded). `path` is relative (no leading "/", no ".."
segment) and becomes the media item's path, so it must be shorter than 256 characters; `size` is at least 1
(a media item cannot be empty). An entry breaking these rules is logged and skipped. The sha256 is what
says a file changed, and what every download is checked against before it is uploaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import mimetypes
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, Field, ValidationError, field_validator
from structlog.stdlib import BoundLogger
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from framework import ConfigError, Environment

T = TypeVar("T")
CHUNK_BYTES = 1024 * 1024
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}


class IndexEntry(BaseModel):
    """One file the external location offers."""

    path: str = Field(min_length=1, max_length=255)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=1)  # a media item cannot be empty

    @field_validator("path")
    @classmethod
    def _relative(cls, path: str) -> str:
        if path.startswith("/") or ".." in path.split("/"):
            raise ValueError("must be relative, without '..' segments")
        return path


class FetchError(Exception):
    """A file or the index could not be fetched; nothing about it was ingested. Never carries a secret."""


class TransientFetchError(FetchError):
    """Worth another try: connection fault, timeout, 429, 5xx, or a download that does not match the index."""


class SourceAuthError(ConfigError):
    """The location refused our credentials (401/403): a configuration problem, so the connector stops."""


class Stopping(Exception):
    """The connector is shutting down: give up waiting for the next attempt."""


@dataclass(frozen=True)
class SourceConfig:
    name: str
    url: str
    headers: dict[str, str]
    params: dict[str, str]
    api_key_secret: str

    @classmethod
    def from_environment(cls, env: Environment, source: str | None, api_key_secret: str, header: str) -> SourceConfig:
        """Read both files now (registering their secrets); a missing source or secret is a ConfigError."""
        configs = env.source_configurations()
        if source is None:
            if len(configs) != 1:
                names = ", ".join(sorted(configs)) or "(none)"
                raise ConfigError(f"set MEDIA_INGEST_SOURCE to one of the configured sources: {names}")
            source = next(iter(configs))
        config = configs.get(source)
        if config is None or config.http_connection_config is None:
            raise ConfigError(
                f"source {source!r} has no httpConnectionConfig in SOURCE_CONFIGURATIONS_PATH; "
                "MediaIngest needs a REST source with a url"
            )
        http = config.http_connection_config
        key = env.source_credentials().get(source, api_key_secret)
        headers = {name: value.get_secret_value() for name, value in http.auth_headers.items()}
        headers[header] = key
        return cls(source, http.url.rstrip("/"), headers, dict(http.query_parameters), api_key_secret)

    def url_of(self, path: str) -> str:
        """The file's URL, without the query parameters (they may hold secrets): safe to log and to publish."""
        return f"{self.url}/{quote(path)}"


@dataclass(frozen=True)
class Download:
    """A file fetched to local disk, its size and sha256 checked against the index."""

    file: Path
    sha256: str
    size: int
    mime_type: str


class ExternalSource:
    """Its own aiohttp session (the Foundry client is for Foundry only), retries, streamed downloads.

    Transient faults are retried `attempts` times with jittered exponential backoff, each retry logged
    with the URL (no query), the attempt and the error's type and status, nothing else.
    """

    def __init__(
        self,
        config: SourceConfig,
        log: BoundLogger,
        *,
        attempts: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 60.0,
        spool_dir: Path | None = None,
        sleep: Callable[[float], Awaitable[bool]] | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
        self.spool_dir = spool_dir
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ExternalSource:
        self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def index(self, index_path: str) -> list[IndexEntry]:
        """The location's index; entries that are not valid are logged and left out."""
        url = self.config.url_of(index_path)

        async def fetch() -> Any:
            async with self._get(url) as resp:
                await self._check(resp, url)
                try:
                    return await resp.json(content_type=None)
                except ValueError as exc:
                    raise FetchError(f"index {url} is not JSON") from exc

        raw = await self._retrying(f"GET {url}", fetch)
        if not isinstance(raw, list):
            raise FetchError(f"index {url} is not a JSON array of {{path, sha256, size}}")
        entries: dict[str, IndexEntry] = {}
        for position, item in enumerate(raw):
            try:
                entry = IndexEntry.model_validate(item)
            except ValidationError as exc:
                problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                self.log.error("invalid index entry skipped", index=url, position=position, error=problem)
                continue
            entries.setdefault(entry.path, entry)
        return list(entries.values())

    @contextlib.asynccontextmanager
    async def download(self, entry: IndexEntry) -> AsyncIterator[Download]:
        """Stream the file to a spool file (never whole in memory), check it, yield it, then delete it."""
        url = self.config.url_of(entry.path)
        fd, name = tempfile.mkstemp(prefix=".media-ingest-", suffix=".part", dir=self.spool_dir)
        os.close(fd)
        spool = Path(name)
        try:
            yield await self._retrying(f"GET {url}", lambda: self._fetch_to(url, entry, spool))
        finally:
            await asyncio.to_thread(spool.unlink, missing_ok=True)

    async def _fetch_to(self, url: str, entry: IndexEntry, spool: Path) -> Download:
        hasher, size = hashlib.sha256(), 0
        async with self._get(url) as resp:
            await self._check(resp, url)
            handle = await asyncio.to_thread(spool.open, "wb")  # truncates what a failed attempt left
            try:
                async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
                    size += len(chunk)
                    if size > entry.size:  # do not fill the disk for a file that is not the one indexed
                        raise TransientFetchError(f"{url} is longer than the {entry.size} bytes the index says")
                    await asyncio.to_thread(_write_and_hash, handle, hasher, chunk)
            finally:
                await asyncio.to_thread(handle.close)
            declared = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if size != entry.size or hasher.hexdigest() != entry.sha256:
            raise TransientFetchError(f"{url} does not match its index entry (size {size}, expected {entry.size})")
        mime = declared if declared not in _GENERIC_TYPES else mimetypes.guess_type(entry.path)[0]
        return Download(spool, entry.sha256, size, mime or "application/octet-stream")

    def _get(self, url: str) -> Any:
        if self._session is None:
            raise RuntimeError("use `async with ExternalSource(...)`")
        return self._session.get(url, headers=self.config.headers, params=self.config.params)

    async def _check(self, resp: aiohttp.ClientResponse, url: str) -> None:
        if resp.status < 400:
            return
        what = f"GET {url} answered {resp.status} {resp.reason or ''}".rstrip()
        if resp.status in (401, 403):
            raise SourceAuthError(
                f"external source {self.config.name!r} refused the credentials: {what}; check its API key "
                f"(secret {self.config.api_key_secret!r} or 'additionalSecret...' in SOURCE_CREDENTIALS)"
            )
        if resp.status == 429 or resp.status >= 500:
            raise TransientFetchError(what)
        raise FetchError(what)

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            wait = state.next_action.sleep if state.next_action is not None else None
            self.log.warning(
                "retrying external fetch",
                request=what,
                attempt=state.attempt_number,
                max_attempts=self.attempts,
                wait_s=round(wait, 3) if wait is not None else None,
                error=_describe(exc),
            )

        async def sleep(seconds: float) -> None:
            if self._sleep is None:
                await asyncio.sleep(seconds)
            elif not await self._sleep(seconds):
                raise Stopping

        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(1, self.attempts)),
            wait=wait_random_exponential(multiplier=self.backoff_s, max=30),
            retry=retry_if_exception_type(TransientFetchError),
            before_sleep=log_retry,
            sleep=sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    return await call()
                except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                    raise TransientFetchError(f"{what}: {_describe(exc)}") from exc
        raise AssertionError("unreachable: tenacity reraises the last error")


def _write_and_hash(handle: BinaryIO, hasher: Any, chunk: bytes) -> None:
    handle.write(chunk)
    hasher.update(chunk)


def _describe(exc: BaseException | None) -> str | None:
    """Type and message of our own errors; only the type of others (their text may echo a URL with a query)."""
    if exc is None:
        return None
    if isinstance(exc, FetchError):
        return str(exc)
    return type(exc).__name__
