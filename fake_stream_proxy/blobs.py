"""Request bodies to blob files and back, without holding a whole body in memory.

Dataset files and media items can be far larger than the fake's JSON body limit, so uploads bypass
`request.read()` (and its `client_max_size`) and go to disk in ~1 MiB writes.
"""

from __future__ import annotations

import asyncio
import os
from typing import BinaryIO

from aiohttp import web

from .storage import Storage

WRITE_BYTES = 1 << 20


async def receive_blob(storage: Storage, request: web.Request) -> tuple[str, int]:
    """Stream the body to a new blob (temp name, then rename); returns (blob id, size in bytes)."""
    blob_id, final = storage.new_blob_path()
    tmp = final.with_suffix(".tmp")
    size = 0
    fh: BinaryIO = await asyncio.to_thread(tmp.open, "wb")
    try:
        buffer = bytearray()
        async for chunk in request.content.iter_chunked(WRITE_BYTES):
            buffer += chunk
            size += len(chunk)
            if len(buffer) >= WRITE_BYTES:
                await asyncio.to_thread(fh.write, bytes(buffer))
                buffer.clear()
        if buffer:
            await asyncio.to_thread(fh.write, bytes(buffer))
        await asyncio.to_thread(fh.close)
        await asyncio.to_thread(os.replace, tmp, final)
    except BaseException:
        fh.close()
        tmp.unlink(missing_ok=True)
        raise
    return blob_id, size
