"""The media ingest against the real fake and a real external HTTP location, both on 127.0.0.1.

The location is an aiohttp server that wants an API key header (401 without it), serves an index and
the files, and counts every request; it can answer 503 a few times to exercise the retries.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import signal
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from connectors.media_ingest import MediaIngest, MediaMetadata, SourceAuthError
from framework import FoundryClient, MediaSetInput, load_environment
from framework._logging import REDACTED, redact
from framework.testing import FakeFoundry, Job, bind_handle, capture_logs

from .connector_process import start_connector
from .stream_support import wait_until

pytestmark = pytest.mark.timeout(60)

API_KEY = "k3y-" + "9f2c41d7e8a6b5c3" * 2
SOURCE = "files-api"
BIG = os.urandom(5 * 1024 * 1024 + 7)


class Location:
    """The external HTTP location: `GET /files/index.json` and `GET /files/<path>`, API key required."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = dict(files)
        self.requests: Counter[str] = Counter()  # path -> authorised requests
        self.unauthorised = 0
        self.fail: Counter[str] = Counter()  # path -> 503s still to give
        self.queries: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Location:
        app = web.Application()
        app.router.add_get("/files/{path:.+}", self._serve)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[attr-defined]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def index(self) -> list[dict[str, Any]]:
        return [{"path": p, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for p, b in self.files.items()]

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("X-Api-Key") != API_KEY:
            self.unauthorised += 1
            return web.Response(status=401, text=f"unknown key {request.headers.get('X-Api-Key')}")
        path = request.match_info["path"]
        self.requests[path] += 1
        self.queries.append(dict(request.query))
        if self.fail[path]:
            self.fail[path] -= 1
            return web.Response(status=503, text="try later")
        if path == "index.json":
            return web.json_response(self.index())
        if path not in self.files:
            return web.Response(status=404)
        body = self.files[path]
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        resp = web.StreamResponse(headers={"Content-Type": content_type, "Content-Length": str(len(body))})
        await resp.prepare(request)
        for start in range(0, len(body), 256 * 1024):  # streamed, as a large file would be
            await resp.write(body[start : start + 256 * 1024])
        await resp.write_eof()
        return resp


@dataclass
class Setup:
    foundry: FakeFoundry
    media: str
    metadata: str
    job: Job
    reader: Job
    source_env: dict[str, str]


async def ingest_setup(foundry: FakeFoundry, tmp_path: Path, location: Location, key: str = API_KEY) -> Setup:
    media = await foundry.create_media_set("media")
    metadata = await foundry.create_stream("media_metadata", MediaMetadata)
    job = await foundry.job(inputs={}, outputs={"media": media, "media_metadata": metadata})
    reader = await foundry.job(inputs={"media": media}, outputs={})
    configurations, credentials = tmp_path / "source-configurations.json", tmp_path / "source-credentials.json"
    http = {"url": f"{location.url}/files", "queryParameters": {"tenant": "acme"}}
    configurations.write_text(json.dumps({SOURCE: {"httpConnectionConfig": http}}))
    credentials.write_text(json.dumps({SOURCE: {"additionalSecretApiKey": key}}))
    source_env = {"SOURCE_CONFIGURATIONS_PATH": str(configurations), "SOURCE_CREDENTIALS": str(credentials)}
    return Setup(foundry, media, metadata, job, reader, source_env)


async def read_items(reader: Job, paths: list[str]) -> dict[str, tuple[str | None, bytes]]:
    """Path -> (rid, content), read by another job; content streamed in chunks."""
    env = load_environment(reader.environ)
    async with FoundryClient(env) as client:
        media = bind_handle(MediaSetInput("media"), env, client, connector_name="reader")
        found: dict[str, tuple[str | None, bytes]] = {}
        for path in paths:
            rid = await media.get_rid(path)
            found[path] = (rid, b"".join([c async for c in media.open_item(path)]) if rid else b"")
        return found


def uploads(provenance: dict[str, Any]) -> Counter[str]:
    return Counter(e["path"] for e in provenance["events"] if e["operation"] == "uploadMediaItem")


async def test_ingests_every_file_once_and_a_changed_one_again(tmp_path: Path) -> None:
    files = {
        "docs/readme.txt": b"hello media set\n",
        "images/logo.png": b"\x89PNG\r\n\x1a\n" + os.urandom(3000),
        "video/clip.mp4": BIG,
        "notes/a b.txt": b"a path that needs percent-encoding",
    }
    settings = {"MEDIA_INGEST_POLL_INTERVAL_S": "0.2", "MEDIA_INGEST_FETCH_BACKOFF_S": "0.01"}
    settings["MEDIA_INGEST_SPOOL_DIR"] = str(tmp_path / "spool")
    (tmp_path / "spool").mkdir()
    async with FakeFoundry(tmp_path) as foundry, Location(files) as location:
        s = await ingest_setup(foundry, tmp_path, location)
        location.fail["images/logo.png"] = 2  # retried, then served

        # First run, in process: every file, one metadata record each.
        with capture_logs() as logs:
            async with s.job.running(MediaIngest, extra_env={**s.source_env, **settings}):
                records = await foundry.wait_for_records(s.metadata, len(files))
        items = await read_items(s.reader, list(files))
        assert {p: content for p, (_, content) in items.items()} == files  # identical bytes, by path
        meta = {r["value"]["path"]: r["value"] for r in records}
        assert len(records) == len(files) and set(meta) == set(files)
        for path, body in files.items():
            m = meta[path]
            assert (m["size"], m["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
            assert m["media_item_rid"] == items[path][0]
            assert m["source_url"] == f"{location.url}/files/{quote(path)}"  # no query: it may carry secrets
        assert (meta["images/logo.png"]["mime_type"], meta["video/clip.mp4"]["mime_type"]) == ("image/png", "video/mp4")
        assert location.requests["images/logo.png"] == 3 and location.requests["video/clip.mp4"] == 1
        assert all(q == {"tenant": "acme"} for q in location.queries)
        assert [e for e in logs if e["event"] == "retrying external fetch" and "logo.png" in e["request"]]
        assert API_KEY not in repr(logs)  # captured before redaction: the connector never logs it at all
        assert redact(None, "info", {"event": f"key {API_KEY}"}) == {"event": f"key {REDACTED}"}  # registered
        assert not list((tmp_path / "spool").iterdir())  # spool files are removed

        # Second run, as a process: only the changed file is downloaded and uploaded again.
        files["images/logo.png"] = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)
        location.files = dict(files)
        before = Counter(location.requests)
        environ = {**s.job.environ, **s.source_env, **settings, "MEDIA_INGEST_POLL_INTERVAL_S": "30"}
        proc = await start_connector(tmp_path, "second", "connectors.media_ingest:MediaIngest", environ)
        try:

            async def polled() -> bool:
                return any(e.get("event") == "poll done" for e in proc.events()) or proc.process.returncode is not None

            await wait_until(polled, "the second run's first poll", timeout_s=20)
            stopping = time.monotonic()
        finally:
            code = await proc.stop(signal.SIGTERM)
        assert code == 0, proc.output()
        assert time.monotonic() - stopping < 5  # stopped in its 30 s sleep, promptly
        polls = [e for e in proc.events() if e.get("event") == "poll done"]
        assert (polls[0]["uploaded"], polls[0]["unchanged"], polls[0]["failed"]) == (1, 3, 0), proc.output()
        assert API_KEY not in proc.output()

        downloaded = location.requests - before
        assert downloaded == Counter({"index.json": 1, "images/logo.png": 1})
        assert uploads(await s.job.provenance()) == Counter({**dict.fromkeys(files, 1), "images/logo.png": 2})
        after = await read_items(s.reader, list(files))
        assert {p: content for p, (_, content) in after.items()} == files
        assert {p: rid for p, (rid, _) in after.items() if p != "images/logo.png"} == {
            p: rid for p, (rid, _) in items.items() if p != "images/logo.png"
        }
        assert after["images/logo.png"][0] != items["images/logo.png"][0]
        records = await foundry.records(s.metadata)
        assert len(records) == len(files) + 1
        latest = max(
            (r["value"] for r in records if r["value"]["path"] == "images/logo.png"), key=lambda v: v["ingested_at"]
        )
        assert latest["sha256"] == hashlib.sha256(files["images/logo.png"]).hexdigest()
        assert latest["media_item_rid"] == after["images/logo.png"][0]

        # Someone else overwrote an item: the ledger no longer describes the set, so that file goes up again.
        params = {"mediaItemPath": "docs/readme.txt", "branchName": "master", "preview": "true"}
        await foundry.call("POST", f"/api/v2/mediasets/{quote(s.media, safe='')}/items", params=params, data=b"x")
        async with s.job.running(MediaIngest, extra_env={**s.source_env, **settings}):
            await foundry.wait_for_records(s.metadata, len(files) + 2)
        again = {"images/logo.png": 2, "docs/readme.txt": 2}
        assert uploads(await s.job.provenance()) == Counter({**dict.fromkeys(files, 1), **again})
        assert {p: content for p, (_, content) in (await read_items(s.reader, list(files))).items()} == files


async def test_a_wrong_api_key_is_a_clear_error_that_shows_no_key(tmp_path: Path) -> None:
    wrong = "wr0ng-" + "5e1d" * 8
    async with FakeFoundry(tmp_path) as foundry, Location({"a.txt": b"a"}) as location:
        s = await ingest_setup(foundry, tmp_path, location, key=wrong)
        with capture_logs() as logs, pytest.raises(SourceAuthError) as raised:
            async with s.job.running(MediaIngest, extra_env=s.source_env):

                async def refused() -> bool:
                    return location.unauthorised > 0

                await wait_until(refused, "the location to refuse the key")
        message = str(raised.value)
        assert "401" in message and "additionalSecret" in message and SOURCE in message, message
        assert wrong not in message and wrong not in repr(logs)
        assert redact(None, "info", {"event": wrong}) == {"event": REDACTED}
        assert location.unauthorised == 1 and not location.requests  # not retried: retrying cannot fix a key
        assert not uploads(await s.job.provenance())
