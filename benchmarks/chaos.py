"""Chaos: 100,000 records through the doubler and through the archiver while everything goes wrong.

Per connector: 10% of its requests faulted (429, 503, dropped before the answer, latency), two SIGKILLs of the
connector (restarted at once, as Foundry restarts a container), one restart of the fake, one token rotation
(one 401: the client re-reads BUILD2_TOKEN), and one 60 s outage (the fake's process stopped). The fake runs as
its own process, restarted on the same port and state folder. Records are published in ten chunks so that
every fault happens mid-stream. Prints records in, distinct out, missing (must be 0), duplicates (at-least-once
allows one in-flight window per kill or fake stop) and wall time. Run: `make chaos` (not part of `make test`).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import table
from connectors.doubler import Doubled, Doubler, Number
from connectors.stream_archiver import StreamArchiver
from connectors.stream_archiver.connector import Event
from framework import DatasetInput, DeadLetter, FoundryClient, load_environment
from framework.testing import FakeFoundry, Job, bind_handle

COUNT = int(os.environ.get("CHAOS_COUNT", "100000"))  # smaller for a quick try
CHUNKS = 10
OUTAGE_S = float(os.environ.get("CHAOS_OUTAGE_S", "60"))
WINDOW = 4 * 1000  # CONNECTOR_MAX_IN_FLIGHT_BATCHES x CONNECTOR_READ_BATCH_SIZE below
FAULTS: list[tuple[dict[str, Any], float]] = [
    ({"status": 503}, 0.03),
    ({"status": 429, "retryAfterS": 0}, 0.03),
    ({"drop": "before"}, 0.02),
    ({"latencyMs": 30}, 0.02),
]
CONNECTOR_ENV = {
    "CONNECTOR_LOG_LEVEL": "WARNING",
    "CONNECTOR_READ_BATCH_SIZE": "1000",
    "CONNECTOR_PUBLISH_BATCH_SIZE": "1000",
    "CONNECTOR_RETRY_INITIAL_BACKOFF_S": "0.05",
    "CONNECTOR_RETRY_MAX_BACKOFF_S": "2",
    "CONNECTOR_OUTAGE_REPORT_S": "20",
    "ARCHIVER_FLUSH_ROWS": "4000",
    "ARCHIVER_FLUSH_INTERVAL_S": "1",
}


class FakeProcess:
    """`python -m fake_stream_proxy serve` on a fixed port and state folder, which `stop`/`start` keep."""

    def __init__(self, state: Path) -> None:
        self.state, self.port, self.url = state, 0, ""
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        args = ["serve", "--port", str(self.port), "--https-port", "0", "--state-dir", str(self.state)]
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fake_stream_proxy", *args, stdout=asyncio.subprocess.PIPE
        )
        assert self.process.stdout is not None
        line = (await asyncio.wait_for(self.process.stdout.readline(), 30)).decode()
        match = re.search(r"http://[\w.]+:(\d+)", line)
        if match is None:
            raise RuntimeError(f"the fake did not start: {line!r}")
        self.url, self.port = match.group(0), int(match.group(1))

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 30)

    @property
    def admin_token(self) -> str:
        return (self.state / "admin-token").read_text().strip()


@dataclass
class Scenario:
    name: str
    spec: str
    setup: Callable[[FakeFoundry], Awaitable[tuple[Job, str, str]]]  # -> job, input stream, subscriber id
    record: Callable[[int], dict[str, Any]]
    output_ids: Callable[[FakeFoundry, Job], Awaitable[list[int]]]  # every id written, duplicates included


async def doubler_setup(foundry: FakeFoundry) -> tuple[Job, str, str]:
    numbers = await foundry.create_stream("numbers", Number, partitions=3)
    doubled = await foundry.create_stream("doubled", Doubled)
    dead = await foundry.create_stream("dead_letters", DeadLetter)
    job = await foundry.job(inputs={"numbers": numbers}, outputs={"doubled": doubled, "dead_letters": dead})
    return job, numbers, await subscriber(job, Doubler, "numbers")


async def doubler_ids(foundry: FakeFoundry, job: Job) -> list[int]:
    return [int(r["value"]["twice_x"]) // 2 for r in await foundry.records(job.alias_map["doubled"]["rid"])]


async def archiver_setup(foundry: FakeFoundry) -> tuple[Job, str, str]:
    events = await foundry.create_stream("events", Event, partitions=3)
    dataset = await foundry.create_dataset("archive")
    job = await foundry.job(inputs={"events": events}, outputs={"archive": dataset})
    return job, events, await subscriber(job, StreamArchiver, "events")


async def archiver_ids(foundry: FakeFoundry, job: Job) -> list[int]:
    reader = await foundry.job(inputs={"archive": job.alias_map["archive"]["rid"]}, outputs={})
    env = load_environment(reader.environ)
    async with FoundryClient(env) as client:
        archive = bind_handle(DatasetInput("archive"), env, client, connector_name="chaos")
        return [int(i) for i in (await archive.read_table()).column("id").to_pylist()]


async def subscriber(job: Job, cls: Any, alias: str) -> str:
    env = load_environment(job.environ)
    async with FoundryClient(env) as client:
        return str(getattr(cls(env, client), alias).subscriber_id)


SCENARIOS = [
    Scenario("doubler", "connectors.doubler:Doubler", doubler_setup, lambda i: {"x": i}, doubler_ids),
    Scenario(
        "archiver",
        "connectors.stream_archiver:StreamArchiver",
        archiver_setup,
        lambda i: {"id": i, "name": f"e{i}", "value": i / 4, "ts": "2024-01-01T00:00:00+00:00"},
        archiver_ids,
    ),
]


class Connector:
    """`connector run` as a process; `kill` is a SIGKILL, `start` a fresh container."""

    def __init__(self, spec: str, environ: dict[str, str], log: Path, keep: Callable[[Connector], None]) -> None:
        self.spec, self.environ, self.log, self.keep = spec, environ, log, keep
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "framework.cli", "run", self.spec, env=self.environ, stdout=out, stderr=out
            )
        self.keep(self)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def ensure_running(self) -> None:
        """A connector that exited (it should not) is restarted, as Foundry would; counted in `starts`."""
        if self.process is not None and self.process.returncode is not None:
            await self.start()


async def add_faults(foundry: FakeFoundry, job: Job) -> None:
    for seed, (action, rate) in enumerate(FAULTS):
        await foundry.faults.add(action, job=job.rid, rate=rate, seed=seed)


async def run(scenario: Scenario, root: Path) -> list[str]:
    fake = FakeProcess(root / "fake")
    try:
        return await _run(scenario, root, fake, _keep)
    finally:  # never leave a process behind, whatever failed
        for process in (*_started, fake.process):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()


_started: list[asyncio.subprocess.Process] = []


def _keep(connector: Connector) -> None:
    if connector.process is not None:
        _started.append(connector.process)


async def _run(scenario: Scenario, root: Path, fake: FakeProcess, keep: Callable[[Connector], None]) -> list[str]:
    await fake.start()
    foundry = FakeFoundry(root, url=fake.url, admin_token=fake.admin_token)
    started = time.monotonic()
    async with foundry:
        job, source, subscriber_id = await scenario.setup(foundry)
        await add_faults(foundry, job)
        environ = {**os.environ, **job.environ, **CONNECTOR_ENV}
        connector = Connector(scenario.spec, environ, root / f"{scenario.name}.log", keep)
        await connector.start()
        chunk = COUNT // CHUNKS

        async def committed() -> int:
            try:
                return sum((await foundry.read_position(source, subscriber_id)).values())
            except AssertionError:
                return 0

        async def until_committed(count: int, limit_s: float = 240) -> None:
            deadline = time.monotonic() + limit_s
            while await committed() < count:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{scenario.name}: {await committed()} committed of {count} after {limit_s}s")
                await connector.ensure_running()
                await asyncio.sleep(0.2)

        counted = {"fired": 0, "requests": 0}

        async def count_faults() -> None:
            """Rules live in the fake's memory: add up their counts before each stop of the fake."""
            rules = await foundry.faults.list()
            counted["fired"] += sum(rule["fired"] for rule in rules if "expireToken" not in rule["action"])
            counted["requests"] += rules[0]["matched"]  # the first rule draws for every request of the job

        async def restart_fake() -> None:
            await count_faults()
            await fake.stop()
            await fake.start()
            await add_faults(foundry, job)  # rules live in the fake's memory

        async def rotate_token() -> None:
            await foundry.faults.add({"expireToken": True}, job=job.rid, next=1)

        async def outage() -> None:
            await count_faults()
            await fake.stop()
            await asyncio.sleep(OUTAGE_S)
            await fake.start()
            await add_faults(foundry, job)

        chaos = {2: connector.kill, 4: connector.kill, 5: restart_fake, 6: rotate_token, 7: outage}
        for index in range(CHUNKS):
            await foundry.publish(source, [scenario.record(i) for i in range(index * chunk, (index + 1) * chunk)])
            await until_committed(index * chunk + chunk // 2)  # the chunk is half through: mid-stream
            if index in chaos:
                await chaos[index]()
                if chaos[index] is connector.kill:
                    await connector.start()
        await until_committed(COUNT)
        wall = time.monotonic() - started
        assert connector.process is not None
        connector.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(connector.process.wait(), 60)
        await count_faults()
        ids = await scenario.output_ids(foundry, job)
    await fake.stop()
    distinct = set(ids)
    missing = COUNT - len(distinct & set(range(COUNT)))
    duplicates = len(ids) - len(distinct)
    bound = (2 + 2) * WINDOW  # two kills, two stops of the fake
    return [
        scenario.name,
        str(COUNT),
        str(len(distinct)),
        str(missing),
        f"{duplicates} (bound {bound})",
        str(connector.starts),
        f"{counted['fired']}/{counted['requests']} ({counted['fired'] / max(1, counted['requests']):.0%})",
        f"{wall:.0f}s",
    ]


async def main() -> int:
    rows = [["connector", "records in", "distinct out", "missing", "duplicates", "starts", "faulted requests", "wall"]]
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        for scenario in [s for s in SCENARIOS if s.name in os.environ.get("CHAOS_ONLY", s.name)]:
            print(f"== {scenario.name}: {COUNT} records, faults at 10%, 2 SIGKILLs, fake restart, token rotation, "
                  f"{OUTAGE_S:.0f}s outage", flush=True)  # fmt: skip
            rows.append(await run(scenario, Path(tmp) / scenario.name))
            print(table(rows[-1:]), flush=True)
    print()
    print(table(rows))
    print("starts: connector processes (1 + 2 after SIGKILLs; more means it exited by itself and was restarted)")
    print("faulted requests: 429/503/drop/latency faults fired / requests of the job, over all runs of the fake")
    failed = [row[0] for row in rows[1:] if row[3] != "0"]
    if failed:
        print(f"MISSING RECORDS in {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
