"""Copies the files of an external HTTP location into a media set (alias `media`), with one metadata record
per item on a stream (alias `media_metadata`).

Why: media sets are how Foundry stores files (documents, images, video) for pipelines and models, and
the files often live behind an API key somewhere else. This is a free-running source: it polls.

Lifecycle: read MEDIA_INGEST_* settings and the source's configuration and API key (stops with exit 2
when something is missing) -> outputs open -> the ledger is read back from `media_metadata` -> every
MEDIA_INGEST_POLL_INTERVAL_S: fetch the index (format in `source.py`); for each new or changed file,
stream it to a spool file while hashing it, check size and sha256 against the index, upload it to the
media set at the same path, publish its `MediaMetadata`; flush the metadata -> SIGTERM: finish the
current file, flush, exit 0 (retry waits are cut short).

How a re-run knows what it already ingested: the metadata stream is the ledger. Every record says
"the item at `path` is `media_item_rid` and has content `sha256`", and is published only after the item
was stored. At start-up the connector reads it back (latest `ingested_at` per path) and a file is ingested
again only when the index shows another sha256. Content hashes, not sizes or timestamps: an edit that
keeps the size is still seen, and a file that was touched but not changed is not copied again (the media
set alone cannot tell: an item's info has a size and a timestamp, no hash). Before trusting a ledger
entry, each path is checked once per process with the media set's `getRidByPath`: if the item there is
not the ledger's (someone replaced it, the set was reset), the file is uploaded again. A ledger that lost
records (stream retention) only ever causes an extra upload, never a missed one.

Why a spool file rather than piping the download into the upload: the sha256 is checked before anything
becomes visible in the media set, and a retried upload re-reads the file. Memory stays at one chunk.

Settings (MEDIA_INGEST_*): SOURCE (the source's name; optional with one source), API_KEY_SECRET (`apiKey`),
API_KEY_HEADER (`X-Api-Key`), INDEX_PATH (`index.json`), POLL_INTERVAL_S (300), FETCH_ATTEMPTS (5),
FETCH_BACKOFF_S (1), FETCH_TIMEOUT_S (60, per socket read), SPOOL_DIR (the system temp dir).

Guarantees: at-least-once. A file is in the media set before its metadata record exists, never the other
way round; killed between the two, the next run uploads it again (the path then points at the newer,
identical item) and publishes the record. A download that does not match the index is never uploaded.
Transient fetch faults are retried; a file that still fails is logged and tried again at the next poll,
and the others go on. A 401/403 from the location stops the connector with an error naming the secret.
Files removed from the location are left in the media set. The API key never reaches the logs: it is
registered for redaction when read, and no header, query string or response body is logged.

Run it: `connector run connectors.media_ingest:MediaIngest`
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from structlog.stdlib import BoundLogger

from framework import Connector, Environment, FoundryClient, MediaSetOutput, StreamOutput

from .source import ExternalSource, FetchError, IndexEntry, SourceConfig, Stopping


class MediaMetadata(BaseModel):
    """One ingested item: where it came from, what it is, and where it is in the media set."""

    path: str
    media_item_rid: str
    size: int
    sha256: str
    mime_type: str
    source_url: str
    ingested_at: datetime


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEDIA_INGEST_", extra="ignore")

    source: str | None = Field(None, min_length=1)  # the source's name; optional when there is only one
    api_key_secret: str = "apiKey"  # also found as `additionalSecretApiKey`
    api_key_header: str = "X-Api-Key"
    index_path: str = "index.json"
    poll_interval_s: float = Field(300.0, gt=0)
    fetch_attempts: int = Field(5, ge=1)
    fetch_backoff_s: float = Field(1.0, ge=0)
    fetch_timeout_s: float = Field(60.0, gt=0)
    spool_dir: Path | None = None  # where downloads wait for their upload; default: the system temp dir

    @field_validator("spool_dir")
    @classmethod
    def _spool_dir_exists(cls, value: Path | None) -> Path | None:
        """Checked at start-up: otherwise every download would fail, each with a traceback."""
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not an existing directory; create it or unset MEDIA_INGEST_SPOOL_DIR")
        return value


class MediaIngest(Connector):
    settings_model = IngestSettings
    settings: IngestSettings
    media = MediaSetOutput("media")
    media_metadata = StreamOutput[MediaMetadata]("media_metadata")

    def __init__(self, env: Environment, client: FoundryClient, log: BoundLogger | None = None) -> None:
        super().__init__(env, client, log)
        s = self.settings
        self.source_config = SourceConfig.from_environment(env, s.source, s.api_key_secret, s.api_key_header)
        self.ledger: dict[str, MediaMetadata] = {}
        self._verified: set[str] = set()  # paths whose ledger entry matched the media set in this process

    async def run(self) -> None:
        s = self.settings
        self.ledger = await read_ledger(self.media_metadata)
        self.log.info("ledger read", items=len(self.ledger), source=self.source_config.name)
        async with ExternalSource(
            self.source_config,
            self.log,
            attempts=s.fetch_attempts,
            backoff_s=s.fetch_backoff_s,
            timeout_s=s.fetch_timeout_s,
            spool_dir=s.spool_dir,
            sleep=self.sleep,
        ) as source:
            await self.poll(source)
            while await self.sleep(s.poll_interval_s):
                await self.poll(source)

    async def poll(self, source: ExternalSource) -> None:
        """One pass over the index. Errors of single files are logged; credentials errors stop the connector."""
        counts = {"listed": 0, "uploaded": 0, "unchanged": 0, "failed": 0}
        try:
            entries = await source.index(self.settings.index_path)
        except Stopping:
            return
        except FetchError as exc:
            self.log.error("index fetch failed; trying again at the next poll", error=str(exc))
            return
        counts["listed"] = len(entries)
        for entry in entries:
            if not self.running:
                break
            if await self._unchanged(entry):
                counts["unchanged"] += 1
                continue
            try:
                await self._ingest(source, entry)
            except Stopping:
                break
            except FetchError as exc:
                counts["failed"] += 1
                self.log.error("file not ingested; trying again at the next poll", path=entry.path, error=str(exc))
                continue
            counts["uploaded"] += 1
        await self.media_metadata.flush()  # the ledger is durable before the next poll relies on it
        self.log.info("poll done", **counts)

    async def _unchanged(self, entry: IndexEntry) -> bool:
        known = self.ledger.get(entry.path)
        if known is None or known.sha256 != entry.sha256:
            return False
        if entry.path in self._verified:
            return True
        current = await self.media.get_rid(entry.path)
        if current != known.media_item_rid:
            self.log.warning(
                "media item differs from the ledger; uploading again",
                path=entry.path,
                ledger_rid=known.media_item_rid,
                current_rid=current,
            )
            return False
        self._verified.add(entry.path)
        return True

    async def _ingest(self, source: ExternalSource, entry: IndexEntry) -> None:
        async with source.download(entry) as fetched:
            rid = await self.media.upload(entry.path, fetched.file, mime_type=fetched.mime_type)
        record = MediaMetadata(
            path=entry.path,
            media_item_rid=rid,
            size=fetched.size,
            sha256=fetched.sha256,
            mime_type=fetched.mime_type,
            source_url=self.source_config.url_of(entry.path),
            ingested_at=datetime.now(UTC),
        )
        await self.media_metadata.publish(record)
        self.ledger[entry.path] = record
        self._verified.add(entry.path)
        self.log.info("ingested", path=entry.path, media_item_rid=rid, size=fetched.size)


async def read_ledger(output: StreamOutput[MediaMetadata]) -> dict[str, MediaMetadata]:
    """Every record of the metadata stream (a job may read its outputs), latest `ingested_at` per path.

    Records that do not validate are skipped: the ledger only ever makes us upload more, never less.
    """
    base = f"/v2/highScale/streams/datasets/{quote(output.rid, safe='')}/streams/{quote(output.branch, safe='')}"
    ends: dict[str, Any] = await output.client.request_json(
        "GET", f"{base}/getEndOffsets", service="stream_proxy", params={"preview": True}
    )
    ledger: dict[str, MediaMetadata] = {}
    for partition, end in (ends or {}).items():
        offset = 0
        while offset < int(end):
            params: dict[str, str | int | bool] = {
                "partitionId": partition,
                "startOffset": offset,
                "limit": 1000,
                "preview": True,
            }
            page = await output.client.request_json("GET", f"{base}/getRecords", service="stream_proxy", params=params)
            if not page:
                break
            for entry in page:
                try:
                    record = MediaMetadata.model_validate(entry.get("value"))
                except ValidationError:
                    continue
                known = ledger.get(record.path)
                if known is None or record.ingested_at >= known.ingested_at:
                    ledger[record.path] = record
            offset = int(page[-1]["offset"]) + 1
    return ledger
