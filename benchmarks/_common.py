"""Shared benchmark plumbing: a fake Foundry in its own process, and a child process's peak RSS."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from framework.testing import FakeFoundry


@asynccontextmanager
async def fake_process(state: Path | None = None) -> AsyncIterator[FakeFoundry]:
    """`fake-stream-proxy serve` as a separate process, so clients and server do not share a loop."""
    state = state or Path(tempfile.mkdtemp(prefix="bench-"))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fake_stream_proxy",
        "serve",
        "--port",
        "0",
        "--state-dir",
        str(state / "fake"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        match = re.search(r"http://[\d.]+:\d+", line)
        if match is None:
            raise RuntimeError(f"fake did not start: {line!r}")
        token = (state / "fake" / "admin-token").read_text().strip()
        async with FakeFoundry(state, url=match.group(0), admin_token=token) as foundry:
            yield foundry
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)
