"""Processes of `make bench`: the framework's connector and the baseline clients, with their CPU and memory."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from benchmarks.fake_ingest import cpu_seconds
from framework.testing import FakeFoundry, Job

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port(count: int = 1) -> int:
    """A port P with P..P+count-1 all free (workers serve P + i), in the range compute modules allow."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + count > 65535:
            continue
        try:
            held = []
            for p in range(port, port + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return port
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1")


@dataclass
class Running:
    """A started process; `ready_at` (perf_counter) once it said so; `pids` of every process doing the work."""

    process: asyncio.subprocess.Process
    spawned_at: float
    ready_at: float = 0.0
    pids: list[int] = field(default_factory=list)

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def rss_mb(self) -> float:
        return max(peak_rss_mb(pid) for pid in self.pids)

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 60)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return self.process.returncode or 0


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def connector_env(job: Job, code: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The job's environment with the framework's defaults (the fixture's fast poll and linger removed)."""
    env = {
        k: v for k, v in job.environ.items() if k not in ("CONNECTOR_POLL_INTERVAL_MS", "CONNECTOR_PUBLISH_LINGER_MS")
    }
    return {**os.environ, **env, "PYTHONPATH": str(code), "CONNECTOR_LOG_LEVEL": "WARNING", **(extra or {})}


async def start_connector(
    job: Job, code: Path, spec: str, *, workers: int = 1, env: Mapping[str, str] | None = None
) -> Running:
    """`connector run spec` from the code at `code`; ready once every worker's /ready answers 200."""
    port = free_port(workers)
    extra = {"CONNECTOR_HTTP_PORT": str(port), **({"CONNECTOR_WORKERS": str(workers)} if workers > 1 else {})}
    spawned = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "framework.cli", "run", spec, env=connector_env(job, code, {**extra, **(env or {})}),
        cwd=code,
    )  # fmt: skip
    running = Running(process, spawned)
    async with aiohttp.ClientSession() as session:
        pending = {port + i for i in range(workers)}
        while pending:
            if process.returncode is not None:
                raise RuntimeError(f"connector exited with {process.returncode} before it was ready")
            for p in list(pending):
                try:
                    async with session.get(f"http://127.0.0.1:{p}/ready") as resp:
                        if resp.status == 200:
                            pending.discard(p)
                except aiohttp.ClientError:
                    pass
            await asyncio.sleep(0.005)
    running.ready_at = time.perf_counter()
    running.pids = _children(process.pid) if workers > 1 else [process.pid]
    return running


async def start_client(kind: str, foundry: FakeFoundry, job: Job, src: str, dst: str, partitions: int) -> Running:
    """A baseline of `benchmarks.clients`; ready once it printed so."""
    spawned = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.clients", kind, foundry.url, job.token, src, dst, str(partitions),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    if line.strip() != b"ready":
        raise RuntimeError(f"{kind} client did not start: {line!r}")
    return Running(process, spawned, time.perf_counter(), [process.pid])


async def wait_for_count(foundry: FakeFoundry, rid: str, count: int, *, timeout_s: float = 600) -> float:
    """perf_counter when the stream's end offsets add up to `count`: cheap, the records are never read."""
    deadline = time.perf_counter() + timeout_s
    while True:
        ends = await foundry.end_offsets(rid)
        now = time.perf_counter()
        if sum(ends.values()) >= count:
            return now
        if now > deadline:
            raise AssertionError(f"{rid}: {sum(ends.values())} of {count} records after {timeout_s}s")
        await asyncio.sleep(0.01)
