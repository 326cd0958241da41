"""The stream archiver against the real fake over 127.0.0.1: transactions per flush, commit ordering, kill -9.

A `FaultProxy` between the archiver and the fake holds or fails dataset commits, so the tests can look
at the subscriber position while a transaction is open, applied but unacknowledged, or refused.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pytest

from connectors.stream_archiver import Event, StreamArchiver
from framework import ConfigError, DatasetInput, FoundryClient, FoundryError, StreamInput, load_environment
from framework.testing import FakeFoundry, Job, bind_handle

from .connector_process import start_connector
from .fault_proxy import FaultProxy
from .stream_support import coverage, end_offsets, read_position, wait_until

pytestmark = pytest.mark.timeout(60)

SPEC = "connectors.stream_archiver:StreamArchiver"
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def events(start: int, stop: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "name": f"event-{i}", "value": i * 0.25, "ts": (T0 + timedelta(seconds=i)).isoformat()}
        for i in range(start, stop)
    ]


@dataclass
class Archive:
    foundry: FakeFoundry
    events: str
    dataset: str
    job: Job  # the archiver's: reads `events`, writes `archive`
    reader: Job  # another job, reading `archive` as an input
    source: StreamInput[Any]  # the archiver's input as it binds it (its subscriber id)

    async def position(self) -> int:
        try:
            return sum((await read_position(self.foundry, self.source)).values())
        except AssertionError:  # no subscriber yet
            return 0

    async def end(self) -> int:
        return sum((await end_offsets(self.foundry, self.events)).values())

    async def wait_committed(self, timeout_s: float = 20) -> None:
        async def done() -> bool:
            return await self.position() == await self.end()

        await wait_until(done, "the archiver to commit every offset", timeout_s=timeout_s)

    async def table(self) -> pa.Table:
        """The dataset as another job reads it: readTable of the current view."""
        async with self._input() as source:
            return await source.read_table()

    async def listed_files(self) -> list[Any]:
        async with self._input() as source:
            return [f async for f in source.list_files()]

    def _input(self) -> _BoundInput:
        return _BoundInput(self.reader)

    async def transactions(self) -> list[dict[str, Any]]:
        path = f"/api/v2/datasets/{quote(self.dataset, safe='')}/transactions"
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params = {"preview": "true", "pageSize": "100", **({"pageToken": token} if token else {})}
            page = await self.foundry.call("GET", path, params=params)
            found += page["data"]
            token = page.get("nextPageToken")
            if not token:
                return found


class _BoundInput:
    """`async with _BoundInput(job) as source`: the job's `archive` input, bound without a connector."""

    def __init__(self, job: Job) -> None:
        self.env = load_environment(job.environ)
        self.client = FoundryClient(self.env)

    async def __aenter__(self) -> DatasetInput:
        return bind_handle(DatasetInput("archive"), self.env, self.client, connector_name="reader")

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()


async def archive_setup(foundry: FakeFoundry, partitions: int) -> Archive:
    stream = await foundry.create_stream("events", Event, partitions=partitions)
    dataset = await foundry.create_dataset("archive")
    job = await foundry.job(inputs={"events": stream}, outputs={"archive": dataset})
    reader = await foundry.job(inputs={"archive": dataset}, outputs={})
    env = load_environment(job.environ)
    async with FoundryClient(env) as client:
        source = StreamArchiver(env, client).events
    return Archive(foundry, stream, dataset, job, reader, source)


POSITION = ("stream_partition", "stream_offset")


def rows(table: pa.Table) -> list[dict[str, Any]]:
    """The archived events without their source positions (checked by `positions_match`)."""
    found = sorted(table.to_pylist(), key=lambda r: int(r["id"]))
    return [{k: v for k, v in r.items() if k not in POSITION} for r in found]


async def positions_match(foundry: FakeFoundry, a: Archive, table: pa.Table) -> None:
    """Every row's (partition, offset) is where that event sits in the input stream."""
    where = {int(r["value"]["id"]): (r["partition"], r["offset"]) for r in await foundry.records(a.events)}
    for row in table.to_pylist():
        assert (row["stream_partition"], row["stream_offset"]) == where[int(row["id"])], row


def expected(start: int, stop: int) -> list[dict[str, Any]]:
    return [{**e, "ts": datetime.fromisoformat(e["ts"])} for e in events(start, stop)]


async def test_one_append_transaction_per_flush_by_size_time_and_shutdown(tmp_path: Path) -> None:
    tuning = {"ARCHIVER_FLUSH_ROWS": "100", "ARCHIVER_FLUSH_INTERVAL_S": "0.5", "CONNECTOR_READ_BATCH_SIZE": "100"}
    async with FakeFoundry(tmp_path) as foundry:
        a = await archive_setup(foundry, partitions=1)
        await foundry.publish(a.events, events(0, 300))  # three flushes' worth
        async with a.job.running(StreamArchiver, extra_env=tuning) as archiver:
            await a.wait_committed()
            txns = await a.transactions()
            assert [(t["transactionType"], t["status"]) for t in txns] == [("APPEND", "COMMITTED")] * 3
            assert rows(await a.table()) == expected(0, 300)

            # Below flush_rows: the interval flushes, not the size.
            published = time.monotonic()
            await foundry.publish(a.events, events(300, 340))
            await a.wait_committed()
            assert time.monotonic() - published >= 0.45
            assert len(await a.transactions()) == 4

            # Shutdown flushes what is buffered before the interval.
            archiver.archive.flush_interval_s = 30
            await foundry.publish(a.events, events(340, 365))

            async def read_all() -> bool:
                return archiver.events.metrics.records == 365

            await wait_until(read_all, "the archiver to read the last records")
            assert await a.position() == 340 and archiver.archive.pending_rows == 25
        assert await a.position() == 365
        txns = await a.transactions()
        assert [(t["transactionType"], t["status"]) for t in txns] == [("APPEND", "COMMITTED")] * 5
        assert rows(await a.table()) == expected(0, 365)
        await positions_match(foundry, a, await a.table())
        commits = [e for e in (await a.job.provenance())["events"] if e["operation"] == "commitTransaction"]
        assert len(commits) == 5 and {e["rid"] for e in commits} == {a.dataset}


async def test_a_full_read_ahead_window_flushes_instead_of_waiting_for_the_timer(tmp_path: Path) -> None:
    # flush_rows is far above what the window (2 batches x 50) can hold, and the timer is far away: the
    # batches in the window wait for a flush that only the window being full can trigger.
    tuning = {
        "ARCHIVER_FLUSH_ROWS": "1000",
        "ARCHIVER_FLUSH_INTERVAL_S": "120",
        "CONNECTOR_READ_BATCH_SIZE": "50",
        "CONNECTOR_MAX_IN_FLIGHT_BATCHES": "2",
    }
    async with FakeFoundry(tmp_path) as foundry:
        a = await archive_setup(foundry, partitions=1)
        await foundry.publish(a.events, events(0, 400))
        started = time.monotonic()
        async with a.job.running(StreamArchiver, extra_env=tuning, timeout_s=30):

            async def all_committed() -> bool:  # 400 rows: far below flush_rows, each window of 100 flushed as it fills
                return await a.position() >= 400

            await wait_until(all_committed, "commits while flush_rows is not reached", timeout_s=30)
        assert time.monotonic() - started < 60  # neither the commits nor the shutdown waited for the 120 s timer
        assert await a.position() == 400
        assert rows(await a.table()) == expected(0, 400)
        assert all(t["status"] == "COMMITTED" for t in await a.transactions())


async def test_offsets_are_committed_only_after_the_dataset_transaction(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry, FaultProxy(foundry.url) as proxy:
        a = await archive_setup(foundry, partitions=2)
        env = {"FOUNDRY_URL": proxy.url, "CONNECTOR_READ_BATCH_SIZE": "50", "ARCHIVER_FLUSH_ROWS": "50"}
        await foundry.publish(a.events, events(0, 100))
        proxy.commit_actions[1] = "hold"
        async with a.job.running(StreamArchiver, extra_env=env) as archiver:

            async def commit_pending() -> bool:
                return proxy.held == 1 and archiver.events.metrics.records == 100

            await wait_until(commit_pending, "a held commit after every record was read")
            await asyncio.sleep(0.3)  # room for a commit that should not happen
            assert await a.position() == 0
            assert (await a.table()).num_rows == 0  # the open transaction is invisible
            assert [t["status"] for t in await a.transactions()] == ["OPEN"]
            proxy.release()
            await a.wait_committed()
        assert rows(await a.table()) == expected(0, 100)

        # A commit that fails: the connector stops, the transaction is aborted, the offsets stay put.
        proxy.commit_actions[proxy.commits + 1] = "fail"
        with pytest.raises(FoundryError, match="InjectedCommitFailure"):
            async with a.job.running(StreamArchiver, extra_env=env):
                await foundry.publish(a.events, events(100, 150))

                async def failed() -> bool:
                    return proxy.failed == 1

                await wait_until(failed, "the injected commit failure")
        assert await a.position() == 100
        statuses = [t["status"] for t in await a.transactions()]
        assert sorted(statuses) == ["ABORTED"] + ["COMMITTED"] * (len(statuses) - 1)
        assert rows(await a.table()) == expected(0, 100)


async def test_sigkill_mid_transaction_then_restart_loses_nothing(tmp_path: Path) -> None:
    count = 3000
    async with FakeFoundry(tmp_path) as foundry, FaultProxy(foundry.url) as proxy:
        a = await archive_setup(foundry, partitions=3)
        await foundry.publish(a.events, events(0, count))
        tuning = {"ARCHIVER_FLUSH_ROWS": "300", "CONNECTOR_READ_BATCH_SIZE": "100"}
        proxied = {**a.job.environ, **tuning, "FOUNDRY_URL": proxy.url, "ARCHIVER_FLUSH_INTERVAL_S": "30"}

        async def killed_at_held_commit(name: str) -> tuple[int, int]:
            """Run until a commit is held at the proxy, kill -9; returns (dataset rows, committed offsets)."""
            proc = await start_connector(tmp_path, name, SPEC, proxied, prefixes=("ARCHIVER_",))
            try:

                async def held() -> bool:
                    return proxy.held == 1 or proc.process.returncode is not None

                await wait_until(held, f"{name}: a held commit", timeout_s=20)
                assert proc.process.returncode is None, proc.output()
            finally:
                assert await proc.stop(signal.SIGKILL) == -signal.SIGKILL
            return (await a.table()).num_rows, await a.position()

        # 1. Killed after its second commit was applied but before it heard back: rows committed, offsets not.
        proxy.commit_actions[2] = "hold_response"
        rows_1, position_1 = await killed_at_held_commit("first")
        proxy.release()
        assert rows_1 > position_1, "the applied commit's offsets must not have been committed"
        assert {t["status"] for t in await a.transactions()} == {"COMMITTED"}

        # 2. Killed while its second commit was in flight: an OPEN transaction with uploaded files is left.
        proxy.commit_actions[proxy.commits + 2] = "hold"
        rows_2, position_2 = await killed_at_held_commit("second")
        proxy.drop_held = True  # the dead process's commit must never land
        proxy.release()
        assert position_2 >= position_1
        txns = {t["rid"]: t["status"] for t in await a.transactions()}
        (stale,) = [rid for rid, status in txns.items() if status == "OPEN"]
        uploads = [e["path"] for e in (await a.job.provenance())["events"] if e.get("transactionRid") == stale]
        listed = await a.listed_files()
        assert uploads and not {f.path for f in listed} & set(uploads), "an open transaction's files are visible"
        assert all(txns[f.transaction_rid] == "COMMITTED" for f in listed)

        # 3. A clean run straight to the fake: aborts the stale transaction, catches up, stops on SIGTERM.
        clean = {**a.job.environ, **tuning, "ARCHIVER_FLUSH_INTERVAL_S": "0.3"}
        third = await start_connector(tmp_path, "third", SPEC, clean, prefixes=("ARCHIVER_",))
        try:
            await a.wait_committed(timeout_s=30)
        finally:
            assert await third.stop() == 0, third.output()

        txns = {t["rid"]: t["status"] for t in await a.transactions()}
        assert txns[stale] == "ABORTED" and "OPEN" not in txns.values()
        assert any(e.get("event") == "aborting stale open transaction" for e in third.events())
        archived = (await a.table()).to_pylist()
        ids = [int(r["id"]) for r in archived]
        missing, duplicates, unexpected = coverage(ids, set(range(count)))
        # The duplicates are exact copies of a source position: de-duplicating on it restores the stream.
        assert len({(r["stream_partition"], r["stream_offset"]) for r in archived}) == count
        report = f"{len(missing)} missing, {duplicates} duplicates; kills at rows/offsets {rows_1}/{position_1}, "
        report += f"{rows_2}/{position_2}"
        assert not missing and not unexpected, report
        # Exactly the rows committed to the dataset but not yet in committed offsets at the last kill are twice.
        assert duplicates == rows_2 - position_2 >= rows_1 - position_1 > 0, report


async def test_a_bad_setting_stops_it_with_a_one_line_config_error(tmp_path: Path) -> None:
    async with FakeFoundry(tmp_path) as foundry:
        job = await archiver_job(foundry)
        with pytest.raises(ConfigError, match=r"^ARCHIVER_FLUSH_ROWS='0' is invalid: .*greater than or equal to 1"):
            async with job.running(StreamArchiver, extra_env={"ARCHIVER_FLUSH_ROWS": "0"}):
                pass


async def archiver_job(foundry: FakeFoundry) -> Job:
    """The archiver's job alone: `archive_setup` builds the connector, which reads the settings."""
    stream = await foundry.create_stream("events", Event)
    dataset = await foundry.create_dataset("archive")
    return await foundry.job(inputs={"events": stream}, outputs={"archive": dataset})
