"""Media set handles against the real fake over 127.0.0.1: round trips, transactions, streaming, scoping."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fake_stream_proxy import FakeServer
from framework import MediaItemPathError
from framework._env.environment import ResourceRef
from framework._errors import ConfigError, NotFoundError, PermissionDeniedError
from framework._media.handles import MediaSetInput, MediaSetOutput
from tests.conftest import Admin

from .bound_handles import job_env

pytestmark = pytest.mark.timeout(60)


async def test_upload_and_read_back_by_path_and_rid(tmp_path: Path, fake: FakeServer, admin: Admin) -> None:
    rid = (await admin.create("media_set", "scans"))["rid"]
    writer = await admin.job(inputs={}, outputs={"scans": rid})
    reader = await admin.job(inputs={"scans": rid}, outputs={})
    local = tmp_path / "page.png"
    local.write_bytes(b"\x89PNG fake image bytes")
    async with job_env(tmp_path, fake, writer, "writer") as job:
        out = job.bind(MediaSetOutput("scans"))
        await out.check()
        assert await out.get_rid("docs/page.png") is None
        item = await out.upload("docs/page.png", local)
        assert await out.get_rid("docs/page.png") == item  # a job may read its own output
        info = await out.info(item)
        assert (info.path, info.mime_type, info.size_bytes) == ("docs/page.png", "image/png", local.stat().st_size)
        pdf = await out.upload("docs/report.pdf", b"%PDF-1.7")
        replaced = await out.upload("docs/page.png", b"newer", mime_type="image/x-custom")
        assert replaced != item and out.metrics.records == 3
    async with job_env(tmp_path, fake, reader, "reader") as job:
        scans = job.bind(MediaSetInput("scans"))
        await scans.check()
        assert await scans.read("docs/page.png") == b"newer"  # last write to a path wins
        assert await scans.read(item) == local.read_bytes()  # the older item is still readable by rid
        assert (await scans.info(pdf)).mime_type == "application/pdf"
        assert (await scans.info(replaced)).mime_type == "image/x-custom"
        with pytest.raises(NotFoundError):
            await scans.read("docs/missing.png")
        with pytest.raises(PermissionDeniedError):
            await job.bind(MediaSetOutput("scans")).upload("x.txt", b"inputs are read-only")


async def test_streamed_read_of_a_multi_megabyte_item(tmp_path: Path, fake: FakeServer, admin: Admin) -> None:
    rid = (await admin.create("media_set", "videos"))["rid"]
    info = await admin.job(inputs={}, outputs={"videos": rid})
    payload = os.urandom(6 * 1024 * 1024 + 123)

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 1 << 20):
            yield payload[start : start + (1 << 20)]

    async with job_env(tmp_path, fake, info) as job:
        out = job.bind(MediaSetOutput("videos", chunk_bytes=256 * 1024))
        item = await out.upload("clip.mp4", body())  # streamed up as well
        chunks = [c async for c in out.open_item("clip.mp4")]
        assert len(chunks) >= 24 and max(len(c) for c in chunks) <= 256 * 1024
        assert hashlib.sha256(b"".join(chunks)).digest() == hashlib.sha256(payload).digest()
        dest = tmp_path / "out" / "clip.mp4"
        assert await out.download(item, dest) == len(payload)
        assert dest.read_bytes() == payload and not list(dest.parent.glob(".*.part"))
        assert (await out.info(item)).mime_type == "video/mp4"


async def test_transactional_set_commits_and_aborts(tmp_path: Path, fake: FakeServer, admin: Admin) -> None:
    rid = (await admin.create("media_set", "batch", transactional=True))["rid"]
    info = await admin.job(inputs={}, outputs={"batch": rid})
    async with job_env(tmp_path, fake, info) as job:
        out = job.bind(MediaSetOutput("batch", transactional=True))
        single = await out.upload("one.txt", b"1")  # its own transaction
        assert await out.get_rid("one.txt") == single

        with pytest.raises(RuntimeError, match="stop"):
            async with out.transaction():
                await out.upload("two.txt", b"2")
                await out.upload("three.txt", b"3")
                raise RuntimeError("stop")
        assert await out.get_rid("two.txt") is None and await out.get_rid("three.txt") is None

        async with out.transaction():
            two = await out.upload("two.txt", b"2")
            assert await out.get_rid("two.txt") is None  # invisible until the commit
        assert await out.get_rid("two.txt") == two
        with pytest.raises(MediaItemPathError, match="at most 255"):
            await out.upload("p" * 256, b"x")


async def test_undeclared_media_set_is_denied(tmp_path: Path, fake: FakeServer, admin: Admin) -> None:
    declared = (await admin.create("media_set", "mine"))["rid"]
    other = (await admin.create("media_set", "theirs"))["rid"]
    info = await admin.job(inputs={"mine": declared}, outputs={})
    async with job_env(tmp_path, fake, info) as job:
        theirs = job.bind(MediaSetInput("mine"), ResourceRef(other))
        with pytest.raises(PermissionDeniedError):
            await theirs.get_rid("a.png")
        with pytest.raises(ConfigError, match="not reachable"):
            await theirs.check()
