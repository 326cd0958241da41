"""Byte plumbing shared by dataset and media handles: upload bodies and atomic downloads."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path

from ._errors import ConnectorError

Body = bytes | os.PathLike[str] | AsyncIterable[bytes]
UploadBody = bytes | Callable[[], AsyncIterable[bytes]]

CHUNK_BYTES = 1024 * 1024


def upload_body(body: Body, chunk_bytes: int = CHUNK_BYTES) -> UploadBody:
    """What `FoundryClient.upload` takes: bytes, or a callable it may re-invoke on retry.

    A file is re-read from the start on each call, so retries are safe; an async iterable can only be
    consumed once, so a second call (a retry after part of it was sent) fails loudly instead of
    uploading a truncated body.
    """
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, os.PathLike):
        path = Path(body)

        async def read_file() -> AsyncIterator[bytes]:
            handle = await asyncio.to_thread(path.open, "rb")
            try:
                while chunk := await asyncio.to_thread(handle.read, chunk_bytes):
                    yield chunk
            finally:
                await asyncio.to_thread(handle.close)

        return read_file
    if isinstance(body, AsyncIterable):
        used = False

        def once() -> AsyncIterable[bytes]:
            nonlocal used
            if used:
                raise ConnectorError("a streamed upload body cannot be replayed for a retry; pass bytes or a path")
            used = True
            return body

        return once
    raise TypeError(f"upload body must be bytes, a path or an async iterable of bytes, got {type(body).__name__}")


async def write_atomically(chunks: AsyncIterable[bytes], dest: Path) -> int:
    """Write to a temporary sibling then rename, so `dest` is never a partial file. Returns the size."""
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.part")
    await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
    handle = await asyncio.to_thread(tmp.open, "wb")
    size = 0
    try:
        async for chunk in chunks:
            await asyncio.to_thread(handle.write, chunk)
            size += len(chunk)
        await asyncio.to_thread(handle.close)
        await asyncio.to_thread(os.replace, tmp, dest)
    except BaseException:
        await asyncio.to_thread(handle.close)
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
        raise
    return size
