"""`Connector`: the user's surface. Declare handles, write a transform (or a free-running `run`).

What drives it (open, read loop, commit loop, flush, close) is `_driver.Driver`, so no name a user picks
for a handle can collide with the framework's machinery; the few names the base class does use are
refused when the subclass is defined.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic_settings import BaseSettings
from structlog.stdlib import BoundLogger

from ._env.settings import load_settings
from ._errors import ConfigError
from ._handles import Binding, Handle, declared_handles, ref_of
from ._logging import get_logger

if TYPE_CHECKING:
    from ._env.environment import Environment
    from ._http import FoundryClient
    from ._streams.input import InputBatch

_current_batch: ContextVar[InputBatch[Any] | None] = ContextVar("framework_current_batch", default=None)

#: Attributes a Connector instance sets itself; with the class's own names, a handle may not use them.
_INSTANCE_NAMES = frozenset({"env", "client", "log", "settings", "_handles", "_stopping"})
_MODE_NAMES = frozenset({"transform", "transform_batch", "run"})


def current_batch() -> InputBatch[Any] | None:
    """The input batch the transform is processing (None outside one).

    `batch.origins[i]` is the `(partition, offset)` of `batch.records[i]`: the list `transform_batch` receives
    is `batch.records` itself. Useful to carry positions into outputs, e.g. for exact de-duplication
    downstream of an at-least-once connector.
    """
    return _current_batch.get()


def connector_name(cls: type[Connector]) -> str:
    """What names the connector in logs and subscriber ids: `name`, else the class name."""
    return cls.name or cls.__name__


class Connector:
    """Base class of every connector. Subclass it, declare handles, and define one of:

    - `async def transform(self, record)` -> an output record, an iterable of them, or None;
    - `async def transform_batch(self, records)` -> an iterable of output records or None;
    - `async def run(self)` for a free-running source (poll something, publish, `await self.sleep(60)`).

    Records returned by a transform go to the connector's only `StreamOutput`; with several outputs,
    publish explicitly with `await self.some_output.publish(record)`, which is tracked the same way.

    Lifecycle: `settings_model` is read from the environment -> every declared alias is checked against
    RESOURCE_ALIAS_MAP and bound -> outputs then inputs are opened -> `setup()` -> the transform loop or
    `run()` -> on SIGTERM/SIGINT reading stops, in-flight batches finish, outputs flush and offsets are
    committed -> `teardown()` -> handles close. Once `setup()` has returned, `teardown()` runs exactly once
    however the connector ends: after a clean stop (outputs flushed), and also after a failure or a
    cancellation (then outputs may hold unflushed records, which `close` discards). If `setup()` raises,
    `teardown()` does not run.

    Guarantees of the transform loop (at-least-once): an input batch's offsets are committed only after
    every record written while processing it was acknowledged by Foundry, and in read order. Up to
    `CONNECTOR_MAX_IN_FLIGHT_BATCHES` batches per input are read ahead while earlier ones are published.
    A record that does not match its input model is never dropped silently: it is logged with its offset,
    counted, and sent to the `DeadLetterOutput` when one is declared; processing goes on. The same holds for
    a transform's output record its output model rejects: per-record transforms dead-letter the input record
    (with its offset), batch transforms the output record.

    An exception raised by the transform follows CONNECTOR_ON_TRANSFORM_ERROR:
    - `stop` (the default): the connector stops (exit code 1) without committing that batch, so it is read
      again next run. The default because an exception is usually a bug or a dependency that is down, and
      then every record would fail: stopping is loud and loses nothing, where dead-lettering would quietly
      divert the whole stream. Outputs already published for that batch are published again on restart.
    - `dead_letter`: the input record goes to the `DeadLetterOutput` (required: a ConfigError otherwise)
      with `transform raised <Type>: <message>` and its partition and offset, and processing goes on. A
      `transform_batch` that raises is called again one record at a time, so only the records that raise
      alone are dead-lettered. Framework errors (Foundry, configuration) raised inside a transform still stop.

    Names the base class uses (`env`, `client`, `log`, `settings`, `setup`, `teardown`, `sleep`, `stop`,
    `running`, `name`, `settings_model`, `transform`, `transform_batch`, `run`) cannot name a handle: such a
    declaration is a `ConfigError` when the class is defined.
    """

    #: Names the connector in logs and in the default subscriber id (`<name>-<alias>`).
    name: ClassVar[str | None] = None
    #: A pydantic-settings class read from the job's environment into `self.settings` when the connector is
    #: created, before any handle is bound; a bad value is a one-line ConfigError (exit code 2).
    settings_model: ClassVar[type[BaseSettings] | None] = None
    #: The loaded `settings_model` (None without one); annotate it in a subclass: `settings: MySettings`.
    settings: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        reserved = frozenset(vars(Connector)) | _INSTANCE_NAMES | _MODE_NAMES
        for attr, value in vars(cls).items():
            if isinstance(value, Handle) and attr in reserved:
                raise ConfigError(
                    f"{cls.__name__}.{attr} = {type(value).__name__}({value.alias!r}): {attr!r} is a name the "
                    "Connector base class uses; declare the handle under another attribute name"
                )

    def __init__(self, env: Environment, client: FoundryClient, log: BoundLogger | None = None) -> None:
        self.env = env
        self.client = client
        name = connector_name(type(self))
        self.log: BoundLogger = log or get_logger("connector", connector=name)
        self.settings = None if self.settings_model is None else load_settings(self.settings_model, env.environ)
        self._stopping = asyncio.Event()
        self._handles: dict[str, Handle] = {}
        for attr, declared in declared_handles(type(self)).items():
            bound = declared.bind(
                Binding(
                    alias=declared.alias,
                    ref=ref_of(declared, env),
                    client=client,
                    runtime=env.runtime,
                    log=self.log.bind(alias=declared.alias),
                    connector_name=name,
                )
            )
            setattr(self, attr, bound)
            self._handles[attr] = bound

    # Hooks a subclass may override.

    async def setup(self) -> None:
        """Runs once, after every handle is open and before the first read or `run()`.

        Open external connections here. If it raises, the connector stops (handles close) and `teardown()`
        is not called.
        """

    async def teardown(self) -> None:
        """Runs once after `setup()` returned, however the connector ends; handles are still open.

        After a clean stop every output has been flushed; after a failure or cancellation they may not have
        been (the connector's error is re-raised after this; an error raised here is logged instead).
        Close external connections here.
        """

    # Helpers for free-running connectors.

    @property
    def running(self) -> bool:
        """False once `stop()` was called (SIGTERM, SIGINT, or the end of `job.running`)."""
        return not self._stopping.is_set()

    def stop(self) -> None:
        """Ask the connector to stop: reading ends, in-flight batches finish, `sleep` returns False."""
        self._stopping.set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep, waking early on shutdown. Returns False when the connector is stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            return True
        return False
