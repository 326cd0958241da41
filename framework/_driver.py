"""`Driver`: runs one `Connector` instance. Open, serve (read loop, commit loop), flush, teardown, close.

Kept off the `Connector` class so that the user's namespace holds only what the user declared and the
few helpers they call; the driver reaches the connector's bound handles through `handles_of`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, Literal

from ._connector import Connector, _current_batch
from ._errors import ConfigError, FoundryError
from ._handles import AckTracker, Handle, Origin
from ._responses import CONNECTION_FAULTS
from ._schemas import check_schema, check_summary
from ._state.checkpoint import held_positions, holds_inputs, restore_state
from ._streams.dead_letters import DeadLetterOutput
from ._streams.input import InputBatch, StreamInput
from ._streams.output import Rejected, StreamOutput
from ._transforming import Transformer

Mode = Literal["transform", "transform_batch", "run"]
_Item = tuple[InputBatch[Any], AckTracker]
_Queue = asyncio.Queue[_Item | None]
#: The first wait after an empty read; it doubles while reads stay empty, up to CONNECTOR_POLL_INTERVAL_MS.
IDLE_FIRST_S = 0.002


def handles_of(connector: Connector) -> dict[str, Handle]:
    """The connector's bound handles, by attribute name."""
    return connector._handles


class Driver:
    """Drives a connector through its lifecycle (see `Connector`) and answers what it declares."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.handles = handles_of(connector)
        self.log = connector.log
        #: True from when every handle is open and `setup()` returned until the loop ends (`/ready`).
        self.ready = False
        self.transformer = Transformer(connector, self.default_output, self.dead_letters, self.log)

    # Introspection (the runtime's progress line, `framework.testing`).

    @property
    def inputs(self) -> list[Handle]:
        return [h for h in self.handles.values() if h.direction == "input" and h.resource]

    @property
    def outputs(self) -> list[Handle]:
        return [h for h in self.handles.values() if h.direction == "output" and h.resource]

    @property
    def dead_letters(self) -> DeadLetterOutput | None:
        return next((h for h in self.handles.values() if isinstance(h, DeadLetterOutput)), None)

    @property
    def default_output(self) -> StreamOutput[Any] | None:
        streams = [
            h for h in self.handles.values() if isinstance(h, StreamOutput) and not isinstance(h, DeadLetterOutput)
        ]
        return streams[0] if len(streams) == 1 else None

    def mode(self) -> Mode:
        """Which of transform / transform_batch / run the connector defines (exactly one)."""
        cls = type(self.connector)
        modes: tuple[Mode, ...] = ("transform", "transform_batch", "run")
        defined = [m for m in modes if callable(getattr(self.connector, m, None))]
        if len(defined) != 1:
            raise ConfigError(
                f"{cls.__name__} must define exactly one of transform(), transform_batch() or run(); "
                f"it defines {', '.join(defined) or 'none'}"
            )
        if defined[0] != "run" and not any(isinstance(h, StreamInput) for h in self.inputs):
            raise ConfigError(f"{cls.__name__} defines {defined[0]}() but declares no StreamInput")
        if self.connector.env.runtime.on_transform_error == "dead_letter" and self.dead_letters is None:
            raise ConfigError(
                f"CONNECTOR_ON_TRANSFORM_ERROR=dead_letter needs a DeadLetterOutput, and {cls.__name__} declares "
                "none: declare one, or unset the variable"
            )
        return defined[0]

    # `connector check`

    async def check(self) -> None:
        """Prove the declaration is valid and every resource reachable with this job token; moves no data.

        A declaration error raises before any request. Every handle is checked and logged (`check ok` or
        `check failed`), then the first handle failure is raised.
        """
        self.mode()
        failures: list[Exception] = []
        resources = [h for h in self.handles.values() if h.resource]
        for handle in resources:
            try:
                await handle.check()
            except CONNECTION_FAULTS as exc:
                # Every other handle would fail the same way: one line, not one per handle.
                url = self.connector.client.url("/")
                message = f"cannot reach Foundry at {url}: {type(exc).__name__} {exc}".strip()
                self.log.error("check failed", alias=handle.alias, error=f"{message}; check FOUNDRY_URL")
                raise ConfigError(message) from None
            except (FoundryError, ConfigError) as exc:
                failures.append(exc)
                self.log.error("check failed", alias=handle.alias, rid=handle.rid, error=str(exc))
            else:
                if not await check_schema(handle, self.log, failures):
                    self.log.info("check ok", alias=handle.alias, kind=handle.kind, rid=handle.rid,
                                  branch=handle.branch)  # fmt: skip
        check_summary(self.log, len(resources), len(failures))
        if failures:
            raise failures[0]

    # The lifecycle.

    async def open(self) -> None:
        for handle in self.outputs + self.inputs:
            await handle.open()
        dead = self.dead_letters
        await restore_state(self.handles.values(), dead, self.inputs)  # state handles: replay their changelogs
        for handle in self.outputs:
            if isinstance(handle, StreamOutput) and handle is not dead and dead is not None:
                handle.on_rejected = self._rejected_by(handle.alias)

    async def flush(self) -> None:
        await asyncio.gather(*(h.flush() for h in self.outputs))

    async def close(self) -> None:
        for handle in self.inputs + self.outputs:
            try:
                await handle.close()
            except Exception as exc:
                self.log.warning("handle close failed", alias=handle.alias, error=str(exc))

    async def serve(self) -> None:
        """Open, run until `stop()` (or `run()` returns), flush, commit, close. Raises what stopped it.

        `teardown()` runs once `setup()` returned, whether the run ended cleanly or not.
        """
        mode = self.mode()
        await self.open()
        try:
            await self.connector.setup()
            self.ready = True
            try:
                if mode == "run":
                    await getattr(self.connector, "run")()  # noqa: B009 - subclasses define it, the base does not
                else:
                    await self._drive(mode)
                await self.flush()
            except BaseException:
                await self._teardown(failed=True)
                raise
            await self._teardown(failed=False)
        finally:
            self.ready = False
            await self.close()

    async def _teardown(self, *, failed: bool) -> None:
        """After a failure the connector's error matters more: a teardown error is only logged then."""
        if not failed:
            await self.connector.teardown()
            return
        try:
            await self.connector.teardown()
        except Exception as exc:
            self.log.exception("teardown failed after the connector failed", error=f"{type(exc).__name__}: {exc}")

    # The transform loop.

    async def _drive(self, mode: Mode) -> None:
        inputs = [h for h in self.inputs if isinstance(h, StreamInput)]
        try:
            async with asyncio.TaskGroup() as group:
                for source in inputs:
                    queue: _Queue = asyncio.Queue()
                    slots = asyncio.Semaphore(max(1, self.connector.env.runtime.max_in_flight_batches))
                    group.create_task(self._read_loop(source, mode, queue, slots), name=f"read-{source.alias}")
                    group.create_task(self._commit_loop(source, queue, slots), name=f"commit-{source.alias}")
        except BaseExceptionGroup as failed:
            # Raise what stopped the loop, not the TaskGroup's wrapper: the runtime's exit codes (a ConfigError
            # is 2, a FoundryError 1) and callers' `except` clauses match on the error's type.
            error = _first_error(failed)
            if error is failed:
                raise
            raise error from error.__cause__

    async def _read_loop(self, source: StreamInput[Any], mode: Mode, queue: _Queue, slots: asyncio.Semaphore) -> None:
        connector = self.connector
        # Adaptive polling: read again at once after records came; after an empty read wait IDLE_FIRST_S,
        # doubling up to CONNECTOR_POLL_INTERVAL_MS while the stream stays empty (an idle connector stays cheap).
        longest_s = connector.env.runtime.poll_interval_ms / 1000
        idle_s = min(IDLE_FIRST_S, longest_s)
        try:
            while connector.running:
                if slots.locked():
                    # The read-ahead window is full and its batches wait for acks: outputs still buffering (for
                    # their linger, or a DatasetOutput below flush_rows) send what they have now.
                    await self._send_now(flush_others=True)
                await slots.acquire()
                if not connector.running:
                    slots.release()
                    break
                batch = await self._unless_stopping(source.read_batch())
                if batch is None:  # stopped while the read waited (for an outage to end): nothing was read
                    slots.release()
                    break
                if not batch.size:
                    slots.release()
                    await self._send_now(flush_others=False)  # nothing more to batch with: no lingering
                    await connector.sleep(idle_s)
                    idle_s = min(idle_s * 2, longest_s)
                    continue
                idle_s = min(IDLE_FIRST_S, longest_s)
                tracker = AckTracker()
                with tracker.active():
                    await self._process(batch, mode)
                await queue.put((batch, tracker))
        finally:
            await queue.put(None)
            # Shutdown: do not let lingering batches hold the last commits.
            await self.flush()

    async def _send_now(self, *, flush_others: bool) -> None:
        """Stream outputs send their buffer without lingering (not waiting for acks); others flush if asked."""
        others = []
        for output in self.outputs:
            if isinstance(output, StreamOutput):
                output.send_now()
            elif flush_others:
                others.append(output.flush())
        await asyncio.gather(*others)

    async def _unless_stopping(self, read: Coroutine[Any, Any, InputBatch[Any]]) -> InputBatch[Any] | None:
        """`read`, or None when the connector is stopping during an outage: a read retrying until Foundry is
        back must not hold up the shutdown (no read commits anything, so abandoning one loses nothing)."""
        task = asyncio.ensure_future(read)
        stopping = asyncio.ensure_future(self.connector.sleep(1e9))
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            stopping.cancel()
        outage = self.connector.client.outage
        while not task.done() and not outage.active:  # a read that Foundry answers is processed and committed
            await asyncio.wait({task}, timeout=0.2)
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None

    async def _commit_loop(self, source: StreamInput[Any], queue: _Queue, slots: asyncio.Semaphore) -> None:
        """Commit each batch once its writes are acknowledged, in read order. The batches queued behind it
        whose writes are acknowledged already go in the same commit: one request where a connector reading ahead
        would send one per batch. A state handle that holds its input (`Windowed(checkpoint="reread")`) lowers
        what is committed: then every partition acknowledged so far is committed up to its hold (a hold released
        by another partition's records is committed too), never back."""
        holding = holds_inputs(self.handles.values())
        acked: dict[str, int] = {}  # partition -> last offset acknowledged, in the view `acked_view`
        acked_view: str | None = None
        item = await queue.get()
        while item is not None:
            batch, tracker = item
            await tracker.wait()
            positions, view, count = dict(batch.positions), batch.view_rid, 1
            following: list[_Item | None] = []  # the first queued item that is not merged, if one was taken
            while not queue.empty():
                after = queue.get_nowait()
                if after is None or not after[1].acknowledged or after[0].view_rid != view:
                    following.append(after)
                    break
                for partition, last in after[0].positions.items():
                    positions[partition] = max(last, positions.get(partition, -1))
                count += 1
            if holding:
                if view != acked_view:
                    acked, acked_view = {}, view
                for partition, last in positions.items():
                    acked[partition] = max(acked.get(partition, -1), last)
                held = held_positions(self.handles.values(), source.alias, acked)
                positions = {p: last for p, last in held.items() if last >= source.committed.get(p, 0)}
            await source.commit(positions, view_rid=view)
            for _ in range(count):
                slots.release()
            item = following[0] if following else await queue.get()

    async def _process(self, batch: InputBatch[Any], mode: Mode) -> None:
        token = _current_batch.set(batch)
        try:
            await self.transformer.process(batch, mode)
        finally:
            _current_batch.reset(token)

    def _rejected_by(self, alias: str) -> Rejected:
        async def rejected(payload: dict[str, Any], error: str, origin: Origin | None) -> None:
            # The input position that produced the record, when known: what an operator needs to find it.
            source = origin.source if origin else alias
            partition, offset = (origin.partition, origin.offset) if origin else (None, None)
            self.log.error(
                "record rejected by output",
                output=alias,
                error=error,
                source=source,
                partition=partition,
                offset=offset,
            )
            dead = self.dead_letters
            assert dead is not None
            await dead.send(source, error, payload, partition=partition, offset=offset)
            # The rejected record counts as acknowledged (and its input batch may be committed) only once its
            # dead letter is: this runs in the output's flusher, where no input batch's AckTracker is active.
            await dead.flush()

        return rejected


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first failure in a TaskGroup's group that is not a cancellation; the group itself if none."""
    for exc in group.exceptions:
        found = _first_error(exc) if isinstance(exc, BaseExceptionGroup) else exc
        if not isinstance(found, asyncio.CancelledError | BaseExceptionGroup):
            return found
    return group
