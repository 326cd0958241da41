"""The base of every input and output handle, and the ack tracking that orders commits after writes.

A handle is declared on a `Connector` class (`numbers = StreamInput[Number]("numbers")`) and is only
a declaration there. When the connector starts, each declaration is copied and bound to its alias of
RESOURCE_ALIAS_MAP, so two connector instances never share state.

Lifecycle, driven by the connector's driver: `bind` (which calls `_on_bind`) -> `open` -> (reads / writes) ->
`flush` -> `close`. The one rule for state: `__init__` stores options only (shared by every bound copy, so
never mutated); `_on_bind` creates every buffer, lock, event and cursor, once per bound copy.
`check` replaces `open` for `connector check`: it proves the resource is reachable and stops there.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, NamedTuple, Self, TypeVar, cast, get_args, overload

from pydantic import BaseModel, TypeAdapter

from ._env.environment import ResourceRef
from ._errors import ConfigError, ConnectorError

if TYPE_CHECKING:
    from structlog.stdlib import BoundLogger

    from ._env.environment import Environment
    from ._env.settings import RuntimeSettings
    from ._http import FoundryClient

ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass
class HandleMetrics:
    """Counters for the progress line and for `framework.testing` assertions."""

    lag: int | None = None  # inputs: records written but not yet committed, as last measured
    records: int = 0
    invalid: int = 0
    bytes: int = 0
    batches: int = 0
    resets: int = 0  # streams: new views noticed (the stream was reset under the connector)
    committed_at: float | None = None  # inputs: time.monotonic() of the last commit


@dataclass
class Binding:
    """What a declared handle is given at start-up: its resource, and the means to reach it."""

    alias: str
    ref: ResourceRef
    client: FoundryClient
    runtime: RuntimeSettings
    log: BoundLogger
    connector_name: str
    metrics: HandleMetrics = field(default_factory=HandleMetrics)


class Handle:
    """Something declared on a connector and bound to one alias of the resource alias map."""

    direction: ClassVar[Literal["input", "output"]]
    kind: ClassVar[Literal["stream", "dataset", "media_set"]]
    _options: Mapping[str, Any]

    def __new__(cls, *args: Any, **options: Any) -> Self:
        handle = super().__new__(cls)
        handle._options = MappingProxyType(options)  # the keyword options as declared: what `configure` starts from
        return handle

    def __init__(self, alias: str) -> None:
        if not alias or not isinstance(alias, str):
            raise ConfigError(f"{type(self).__name__} needs the alias of a resource, got {alias!r}")
        self.alias = alias
        self.attr_name = alias
        self._binding: Binding | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr_name = name

    def bind(self, binding: Binding) -> Self:
        """A bound copy: the class-level declaration stays a declaration. Calls `_on_bind` on the copy."""
        bound = copy.copy(self)
        bound._binding = binding
        bound._on_bind()
        return bound

    def _on_bind(self) -> None:
        """Create the per-run state (buffers, locks, events, cursors) of a bound copy.

        Runs right after `bind` (and after `configure` on a bound copy), before `open`. `__init__` holds
        only options, which a shallow copy may share; anything mutable must be created here, so two bound
        copies of one declaration (two connector instances) never share it.
        """

    def configure(self, **options: Any) -> Self:
        """Change options (the constructor's keyword arguments), validated exactly as the constructor does.

        Call it before the connector opens its handles, e.g. in a connector's `__init__` after
        `super().__init__()` from `self.settings`; on a bound handle it changes this connector instance
        only, and recreates its per-run state. A bad option is a ConfigError and changes nothing.
        """
        try:
            fresh = type(self)(self.alias, **{**self._options, **options})
        except TypeError as exc:  # an option the constructor does not take
            raise ConfigError(f"{type(self).__name__}({self.alias!r}).configure(): {exc}") from None
        keep = {"attr_name", "_binding", "__orig_class__"}
        vars(self).update({k: v for k, v in vars(fresh).items() if k not in keep})
        if self._binding is not None:
            self._on_bind()
        return self

    @property
    def binding(self) -> Binding:
        if self._binding is None:
            raise RuntimeError(
                f"{type(self).__name__}({self.alias!r}) is used before the connector started; "
                "use it from transform(), run() or setup()"
            )
        return self._binding

    @property
    def resource(self) -> bool:
        """Whether the handle is a resource of the job (an alias of RESOURCE_ALIAS_MAP, opened and checked); a
        state handle that rebuilds itself by re-reading its input is not."""
        return True

    @property
    def rid(self) -> str:
        return self.binding.ref.rid

    @property
    def branch(self) -> str:
        return self.binding.ref.branch

    @property
    def client(self) -> FoundryClient:
        return self.binding.client

    @property
    def log(self) -> BoundLogger:
        return self.binding.log

    @property
    def metrics(self) -> HandleMetrics:
        return self.binding.metrics

    async def open(self) -> None:
        """Called once before the first read or write."""

    async def check(self) -> None:
        """Prove the resource exists and the job token may use it, without moving data."""

    async def flush(self) -> None:
        """Outputs: push everything buffered and wait until Foundry acknowledged it."""

    async def close(self) -> None:
        """Release resources; outputs abort anything not flushed (never leave half-written data)."""

    def __repr__(self) -> str:
        state = f"bound to {self._binding.ref.rid}" if self._binding else "unbound"
        return f"{type(self).__name__}({self.alias!r}, {state})"


class ModelHandle(Handle, Generic[ModelT]):
    """A handle whose records are pydantic models: `StreamInput[Number]("numbers")`.

    The model comes from the subscript (read at start-up from `__orig_class__`, which Python sets after
    `__init__`) or from `model=`.
    """

    def __init__(self, alias: str, *, model: type[ModelT] | None = None) -> None:
        super().__init__(alias)
        self._model = model

    @property
    def model(self) -> type[ModelT]:
        if self._model is None:
            orig = getattr(self, "__orig_class__", None)
            args = get_args(orig) if orig is not None else ()
            if not args or not (isinstance(args[0], type) and issubclass(args[0], BaseModel)):
                raise ConfigError(
                    f"{type(self).__name__}({self.alias!r}) has no record model: declare it as "
                    f"{type(self).__name__}[MyModel]({self.alias!r}) with a pydantic model"
                )
            self._model = cast("type[ModelT]", args[0])
        return self._model


def declared_handles(cls: type) -> dict[str, Handle]:
    """The handles declared on `cls` and its bases, by attribute name (a subclass's declaration wins)."""
    found: dict[str, Handle] = {}
    for klass in reversed(cls.__mro__):
        found.update({k: v for k, v in vars(klass).items() if isinstance(v, Handle)})
    return found


def ref_of(handle: Handle, env: Environment) -> ResourceRef:
    """What `handle` binds to: its alias in RESOURCE_ALIAS_MAP, or no resource when it is none."""
    return env.ref(handle.alias) if handle.resource else ResourceRef(rid="")


def declared_resources(cls: type) -> dict[str, Handle]:
    """The declared handles that are resources of the job (what the alias map, a stack file, a check name)."""
    return {name: handle for name, handle in declared_handles(cls).items() if handle.resource}


# Ack tracking: writes made while the framework processes an input batch are collected here, so the
# batch's offsets are committed only once every one of those writes has been acknowledged.

_current_tracker: ContextVar[AckTracker | None] = ContextVar("framework_ack_tracker", default=None)


class Origin(NamedTuple):
    """Where the input record being transformed came from: outputs keep it with every record they buffer, so a
    record the server rejects later is dead-lettered with the input position that produced it. (A named tuple:
    one is made per record, and that is cheaper than a frozen dataclass.)"""

    source: str
    partition: str | None
    offset: int | None


class RecordCursor:
    """The input position of the record a per-record transform is running on: the driver sets it once per
    batch and moves `index` along (an attribute store per record, where a context variable set and reset and
    an `Origin` per record cost more than publishing a small record). `current_origin()` reads it. A task the
    transform starts and that publishes later sees the record being transformed then, not the one it came from:
    pass `origins=` to `publish_many` from such a task."""

    __slots__ = ("index", "positions", "source")

    def __init__(self, source: str, positions: Sequence[tuple[str, int]]) -> None:
        self.source, self.positions, self.index = source, positions, 0

    def origin(self) -> Origin:
        partition, offset = self.positions[self.index]
        return Origin(self.source, partition, offset)


class Origins(Sequence[Origin]):
    """The input positions of records transforms returned (`owners`: the index in the batch of each record's
    input record), made only when one is asked for (a record the server rejects)."""

    __slots__ = ("_owners", "_positions", "_source")

    def __init__(self, source: str, positions: Sequence[tuple[str, int]], owners: Sequence[int]) -> None:
        self._source, self._positions, self._owners = source, positions, owners

    def __len__(self) -> int:
        return len(self._owners)

    @overload
    def __getitem__(self, index: int) -> Origin: ...
    @overload
    def __getitem__(self, index: slice) -> Origins: ...
    def __getitem__(self, index: int | slice) -> Origin | Origins:
        if isinstance(index, slice):
            return Origins(self._source, self._positions, self._owners[index])
        partition, offset = self._positions[self._owners[index]]
        return Origin(self._source, partition, offset)


_current_origin: ContextVar[Origin | RecordCursor | None] = ContextVar("framework_record_origin", default=None)


@contextmanager
def origin_of(origin: Origin | RecordCursor | None) -> Iterator[None]:
    """The driver sets the input position around a transform (None elsewhere)."""
    token = _current_origin.set(origin)
    try:
        yield
    finally:
        _current_origin.reset(token)


def current_origin() -> Origin | None:
    value = _current_origin.get()
    return value.origin() if isinstance(value, RecordCursor) else value


class AckTracker:
    """The acknowledgements one input batch waits for before its offsets may be committed."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[None]] = []
        self.created = time.monotonic()

    async def wait(self) -> None:
        """Return once every write is acknowledged; raise the first failure. Outputs register one future per
        call (a chunk of records), not one per record."""
        if len(self.pending) == 1:
            await self.pending[0]
        elif self.pending:
            await asyncio.gather(*self.pending)

    @property
    def acknowledged(self) -> bool:
        """Every write acknowledged already (none failed, none pending): `wait` would return at once."""
        return all(f.done() and not f.cancelled() and f.exception() is None for f in self.pending)

    @contextmanager
    def active(self) -> Iterator[AckTracker]:
        token = _current_tracker.set(self)
        try:
            yield self
        finally:
            _current_tracker.reset(token)


def track(ack: asyncio.Future[None]) -> None:
    """Outputs call this for every write; it binds the write to the input batch being processed."""
    tracker = _current_tracker.get()
    if tracker is not None:
        tracker.pending.append(ack)


def as_model(model: type[ModelT], record: Any) -> ModelT:
    """Accept a model instance or anything pydantic can validate into one (dict, another model)."""
    if isinstance(record, model):
        return record
    if isinstance(record, BaseModel):
        record = record.model_dump()
    return model.model_validate(record)


@functools.cache
def list_adapter(model: type[ModelT]) -> TypeAdapter[list[ModelT]]:
    """Validates and dumps a whole list of `model` in one call into pydantic's core (Rust): what keeps reads and
    publishes cheap per record. Equivalent to `model.model_validate` / `model_dump` of each item."""
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def settle(acks: Iterable[asyncio.Future[None]], error: BaseException | None = None) -> None:
    """Resolve (or fail with `error`) every ack still pending; a cancellation fails them as a ConnectorError."""
    for ack in acks:
        if ack.done():
            continue
        if error is None:
            ack.set_result(None)
        else:
            ack.set_exception(
                error if isinstance(error, Exception) else ConnectorError(f"write interrupted: {error!r}")
            )
