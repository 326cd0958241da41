"""`Connector`: declare handles, write a transform (or a free-running `run`), and the framework drives it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any, ClassVar

from pydantic import BaseModel
from structlog.stdlib import BoundLogger

from ._errors import ConfigError, RecordValidationError
from ._handles import AckTracker, Binding, Handle
from ._http import FoundryClient
from ._logging import get_logger
from ._settings import Environment
from ._stream_output import DeadLetterOutput, StreamOutput
from ._streams import InputBatch, InvalidRecord, StreamInput

_current_batch: ContextVar[InputBatch[Any] | None] = ContextVar("framework_current_batch", default=None)


def current_batch() -> InputBatch[Any] | None:
    """The input batch the transform is processing (None outside one).

    `batch.origins[i]` is the `(partition, offset)` of `batch.records[i]`: the list `transform_batch` receives
    is `batch.records` itself. Useful to carry positions into outputs, e.g. for exact de-duplication
    downstream of an at-least-once connector.
    """
    return _current_batch.get()


class Connector:
    """Base class of every connector. Subclass it, declare handles, and define one of:

    - `async def transform(self, record)` -> an output record, an iterable of them, or None;
    - `async def transform_batch(self, records)` -> an iterable of output records or None;
    - `async def run(self)` for a free-running source (poll something, publish, `await self.sleep(60)`).

    Records returned by a transform go to the connector's only `StreamOutput`; with several outputs,
    publish explicitly with `await self.some_output.publish(record)`, which is tracked the same way.

    Lifecycle: every declared alias is checked against RESOURCE_ALIAS_MAP -> outputs then inputs are
    opened -> `setup()` -> the transform loop or `run()` -> on SIGTERM/SIGINT reading stops, in-flight
    batches finish, outputs flush and offsets are committed -> `teardown()` -> handles close.

    Guarantees of the transform loop (at-least-once): an input batch's offsets are committed only after
    every record written while processing it was acknowledged by Foundry, and in read order. Up to
    `CONNECTOR_MAX_IN_FLIGHT_BATCHES` batches per input are read ahead while earlier ones are published.
    A record that does not match its input model is never dropped silently: it is logged with its offset,
    counted, and sent to the `DeadLetterOutput` when one is declared; processing goes on. The same holds for
    a transform's output record its output model rejects: per-record transforms dead-letter the input record
    (with its offset), batch transforms the output record. An exception from the transform stops the
    connector without committing that batch, so it is read again next run.
    """

    #: Names the connector in logs and in the default subscriber id (`<name>-<alias>`).
    name: ClassVar[str | None] = None

    def __init__(self, env: Environment, client: FoundryClient, log: BoundLogger | None = None) -> None:
        self.env = env
        self.client = client
        self.log: BoundLogger = log or get_logger("connector", connector=self.connector_name)
        self.stopping = asyncio.Event()
        self.handles: dict[str, Handle] = {}
        for attr, declared in self.declared_handles().items():
            bound = declared.bind(
                Binding(
                    alias=declared.alias,
                    ref=env.ref(declared.alias),
                    client=client,
                    runtime=env.runtime,
                    log=self.log.bind(alias=declared.alias),
                    connector_name=self.connector_name,
                )
            )
            setattr(self, attr, bound)
            self.handles[attr] = bound

    @classmethod
    def declared_handles(cls) -> dict[str, Handle]:
        found: dict[str, Handle] = {}
        for klass in reversed(cls.__mro__):
            found.update({k: v for k, v in vars(klass).items() if isinstance(v, Handle)})
        return found

    @property
    def connector_name(self) -> str:
        return self.name or type(self).__name__

    # Hooks a subclass may override.

    async def setup(self) -> None:
        """Open external connections; handles are already open."""

    async def teardown(self) -> None:
        """Close external connections; outputs have been flushed, handles are still open."""

    # Helpers for free-running connectors.

    @property
    def running(self) -> bool:
        return not self.stopping.is_set()

    def stop(self) -> None:
        self.stopping.set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep, waking early on shutdown. Returns False when the connector is stopping."""
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            return True
        return False

    # Introspection used by the runtime and by `framework.testing`.

    @property
    def inputs(self) -> list[Handle]:
        return [h for h in self.handles.values() if h.direction == "input"]

    @property
    def outputs(self) -> list[Handle]:
        return [h for h in self.handles.values() if h.direction == "output"]

    @property
    def dead_letters(self) -> DeadLetterOutput | None:
        return next((h for h in self.handles.values() if isinstance(h, DeadLetterOutput)), None)

    @property
    def default_output(self) -> StreamOutput[Any] | None:
        streams = [
            h for h in self.handles.values() if isinstance(h, StreamOutput) and not isinstance(h, DeadLetterOutput)
        ]
        return streams[0] if len(streams) == 1 else None

    def mode(self) -> str:
        """Which of transform / transform_batch / run this connector defines (exactly one)."""
        defined = [m for m in ("transform", "transform_batch", "run") if callable(getattr(self, m, None))]
        if len(defined) != 1:
            raise ConfigError(
                f"{type(self).__name__} must define exactly one of transform(), transform_batch() or run(); "
                f"it defines {', '.join(defined) or 'none'}"
            )
        if defined[0] != "run" and not any(isinstance(h, StreamInput) for h in self.inputs):
            raise ConfigError(f"{type(self).__name__} defines {defined[0]}() but declares no StreamInput")
        return defined[0]

    async def open(self) -> None:
        for handle in self.outputs + self.inputs:
            await handle.open()
        dead = self.dead_letters
        for handle in self.outputs:
            if isinstance(handle, StreamOutput) and handle is not dead and dead is not None:
                handle.on_rejected = self._rejected_by(handle.alias)

    async def check(self) -> None:
        """Prove every declared resource is reachable with this job token; moves no data."""
        self.mode()
        for handle in self.handles.values():
            await handle.check()

    async def flush(self) -> None:
        await asyncio.gather(*(h.flush() for h in self.outputs))

    async def close(self) -> None:
        for handle in self.inputs + self.outputs:
            try:
                await handle.close()
            except Exception as exc:
                self.log.warning("handle close failed", alias=handle.alias, error=str(exc))

    async def serve(self) -> None:
        """Open, run until `stop()` (or `run()` returns), flush, commit, close. Raises what stopped it."""
        mode = self.mode()
        await self.open()
        try:
            await self.setup()
            if mode == "run":
                await getattr(self, "run")()  # noqa: B009 - subclasses define it, the base does not
            else:
                await self._drive(mode)
            await self.flush()
            await self.teardown()
        finally:
            await self.close()

    # The transform loop.

    async def _drive(self, mode: str) -> None:
        inputs = [h for h in self.inputs if isinstance(h, StreamInput)]
        try:
            async with asyncio.TaskGroup() as group:
                for source in inputs:
                    queue: asyncio.Queue[tuple[InputBatch[Any], AckTracker] | None] = asyncio.Queue()
                    slots = asyncio.Semaphore(max(1, self.env.runtime.max_in_flight_batches))
                    group.create_task(self._read_loop(source, mode, queue, slots), name=f"read-{source.alias}")
                    group.create_task(self._commit_loop(source, queue, slots), name=f"commit-{source.alias}")
        except BaseExceptionGroup as failed:
            # Raise what stopped the loop, not the TaskGroup's wrapper: the runtime's exit codes (a ConfigError
            # is 2, a FoundryError 1) and callers' `except` clauses match on the error's type.
            error = _first_error(failed)
            if error is failed:
                raise
            raise error from error.__cause__

    async def _read_loop(
        self,
        source: StreamInput[Any],
        mode: str,
        queue: asyncio.Queue[tuple[InputBatch[Any], AckTracker] | None],
        slots: asyncio.Semaphore,
    ) -> None:
        idle_s = self.env.runtime.poll_interval_ms / 1000
        try:
            while self.running:
                if slots.locked():
                    # The read-ahead window is full and its batches wait for acks: an output buffering for more
                    # rows (a DatasetOutput below flush_rows) would wait for its timer, so send what it has now.
                    await self.flush()
                await slots.acquire()
                if not self.running:
                    slots.release()
                    break
                batch = await source.read_batch()
                if not batch.size:
                    slots.release()
                    await self.sleep(idle_s)
                    continue
                tracker = AckTracker()
                with tracker.active():
                    await self._process(batch, mode)
                await queue.put((batch, tracker))
        finally:
            await queue.put(None)
            # Shutdown: do not let lingering batches hold the last commits.
            await self.flush()

    async def _commit_loop(
        self,
        source: StreamInput[Any],
        queue: asyncio.Queue[tuple[InputBatch[Any], AckTracker] | None],
        slots: asyncio.Semaphore,
    ) -> None:
        while (item := await queue.get()) is not None:
            batch, tracker = item
            await tracker.wait()
            await source.commit(batch.positions)
            slots.release()

    async def _process(self, batch: InputBatch[Any], mode: str) -> None:
        token = _current_batch.set(batch)
        try:
            await self._process_batch(batch, mode)
        finally:
            _current_batch.reset(token)

    async def _process_batch(self, batch: InputBatch[Any], mode: str) -> None:
        for invalid in batch.invalid:
            await self._dead_letter(batch.source.alias, invalid)
        if not batch.records:
            return
        if mode == "transform_batch":
            result = await getattr(self, "transform_batch")(batch.records)  # noqa: B009
            await self._emit(result, dead_letter_invalid=True)
            return
        transform = getattr(self, "transform")  # noqa: B009
        for record, (partition, offset) in zip(batch.records, batch.origins, strict=True):
            try:
                await self._emit(await transform(record))
            except RecordValidationError as exc:
                # The transform produced a record its output's model rejects: keep the input record.
                raw = record.model_dump(mode="json")
                error = f"transform output for {exc.alias!r} is invalid: {exc.message}"
                await self._dead_letter(batch.source.alias, InvalidRecord(partition, offset, raw, error))

    async def _emit(self, result: Any, *, dead_letter_invalid: bool = False) -> None:
        """Publish a transform's result to the default output.

        With `dead_letter_invalid` (batch transforms, where no input offset belongs to an output record), an
        output record its model rejects is dead-lettered itself; otherwise the caller gets the error.
        """
        if result is None:
            return
        # A pydantic model is itself iterable (over its fields): it is one record, like a dict.
        single = isinstance(result, BaseModel | dict | str | bytes) or not isinstance(result, Iterable)
        records = [result] if single else list(result)
        if not records:
            return
        output = self.default_output
        if output is None:
            raise ConfigError(
                f"{type(self).__name__}'s transform returned records but the connector does not have exactly "
                "one StreamOutput: publish explicitly with `await self.<output>.publish(record)`"
            )
        if not dead_letter_invalid:
            await output.publish_many(records)
            return
        for record in records:
            try:
                await output.publish(record)
            except RecordValidationError as exc:
                raw = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
                error = f"transform output for {exc.alias!r} is invalid: {exc.message}"
                await self._dead_letter(output.alias, InvalidRecord(None, None, raw, error))

    async def _dead_letter(self, alias: str, invalid: InvalidRecord) -> None:
        self.log.error(
            "invalid record",
            source=alias,
            partition=invalid.partition,
            offset=invalid.offset,
            error=invalid.error,
            dead_letter=self.dead_letters.alias if self.dead_letters else None,
        )
        if self.dead_letters is not None:
            await self.dead_letters.send(
                alias, invalid.error, invalid.raw, partition=invalid.partition, offset=invalid.offset
            )

    def _rejected_by(self, alias: str) -> Any:
        async def rejected(payload: dict[str, Any], error: str) -> None:
            self.log.error("record rejected by output", output=alias, error=error)
            assert self.dead_letters is not None
            await self.dead_letters.send(alias, error, payload)
            # The rejected record counts as acknowledged (and its input batch may be committed) only once its
            # dead letter is: this runs in the output's flusher, where no input batch's AckTracker is active.
            await self.dead_letters.flush()

        return rejected


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first failure in a TaskGroup's group that is not a cancellation; the group itself if none."""
    for exc in group.exceptions:
        found = _first_error(exc) if isinstance(exc, BaseExceptionGroup) else exc
        if not isinstance(found, asyncio.CancelledError | BaseExceptionGroup):
            return found
    return group
