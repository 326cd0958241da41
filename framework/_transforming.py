"""Running a connector's transform over one input batch: what it returns is published, what fails is dead-lettered.

The driver reads and commits; this module is the part in between, for one batch at a time: `transform` per
record (results held and published in one call after the batch) or `transform_batch`, with the
CONNECTOR_ON_TRANSFORM_ERROR policy, output records their model rejects, and the dead letters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from structlog.stdlib import BoundLogger

from ._connector import Connector
from ._errors import ConfigError, FoundryError, RecordValidationError
from ._handles import Origin, Origins, RecordCursor, origin_of
from ._streams.dead_letters import DeadLetterOutput
from ._streams.input import InputBatch, InvalidRecord
from ._streams.output import StreamOutput


class Transformer:
    """One connector's transform step; `default_output` and `dead_letters` are the driver's (fixed once bound)."""

    def __init__(
        self,
        connector: Connector,
        default_output: StreamOutput[Any] | None,
        dead_letters: DeadLetterOutput | None,
        log: BoundLogger,
    ) -> None:
        self.connector = connector
        self.default_output = default_output
        self.dead_letters = dead_letters
        self.log = log

    async def process(self, batch: InputBatch[Any], mode: str) -> None:
        """Dead-letter the batch's invalid records, then run the transform over the valid ones."""
        for invalid in batch.invalid:
            await self.dead_letter(batch.source.alias, invalid)
        if not batch.records:
            return
        if mode == "transform_batch":
            await self._transform_batch(batch)
            return
        await self._transform_each(batch)

    async def _transform_each(self, batch: InputBatch[Any]) -> None:
        """`transform` per record; what the records return is held and published to the default output in one
        call after the batch (before anything else is published to it, so order is kept)."""
        transform = getattr(self.connector, "transform")  # noqa: B009
        alias = batch.source.alias
        held = _Held(batch, [], [])
        output = self.default_output
        # One record, not several: the output's model first, the common case (an exact type match is fastest).
        single = (output.model if output is not None else BaseModel, BaseModel, dict, str, bytes)
        if output is not None:
            output.before_publish = lambda: self._publish_held(held)
        cursor = RecordCursor(alias, batch.origins)
        try:
            with origin_of(cursor):
                for index, record in enumerate(batch.records):
                    cursor.index = index
                    try:
                        result = await transform(record)
                    except RecordValidationError as exc:
                        # The transform produced a record its output's model rejects: keep the input record.
                        error = f"transform output for {exc.alias!r} is invalid: {exc.message}"
                        await self._dead_letter_input(batch, index, error)
                        continue
                    except Exception as exc:
                        if not self._dead_letters_errors(exc):
                            raise
                        await self._dead_letter_input(batch, index, _raised(exc))
                        continue
                    if result is None:
                        continue
                    if isinstance(result, single) or not isinstance(result, Iterable):
                        held.results.append(result)
                        held.owners.append(index)
                    else:
                        many = list(result)
                        held.results += many
                        held.owners += [index] * len(many)
                    if output is None and held.results:
                        raise ConfigError(_NO_DEFAULT_OUTPUT.format(type(self.connector).__name__))
            await self._publish_held(held)
        finally:
            if output is not None:
                output.before_publish = None

    async def _dead_letter_input(self, batch: InputBatch[Any], index: int, error: str) -> None:
        partition, offset = batch.origins[index]
        record = batch.records[index]
        await self.dead_letter(
            batch.source.alias, InvalidRecord(partition, offset, record.model_dump(mode="json"), error)
        )

    async def _publish_held(self, held: _Held) -> None:
        """Publish what the transforms returned so far, in one call; when a record there is invalid, each input
        record's results on their own, and the input records whose results are invalid are dead-lettered."""
        output = self.default_output
        if not held.results or output is None:
            return
        results, owners = held.results, held.owners
        held.results, held.owners = [], []
        hook, output.before_publish = output.before_publish, None  # publishing now: no recursion
        alias, batch = held.batch.source.alias, held.batch
        try:
            origins = Origins(alias, batch.origins, owners)
            try:
                await output.publish_many(results, origins)
                return
            except RecordValidationError:
                pass
            start = 0
            for end in range(1, len(owners) + 1):
                if end < len(owners) and owners[end] == owners[start]:
                    continue
                try:
                    await output.publish_many(results[start:end], origins[start:end])
                except RecordValidationError as exc:
                    error = f"transform output for {exc.alias!r} is invalid: {exc.message}"
                    await self._dead_letter_input(batch, owners[start], error)
                start = end
        finally:
            output.before_publish = hook

    async def _transform_batch(self, batch: InputBatch[Any]) -> None:
        """With CONNECTOR_ON_TRANSFORM_ERROR=dead_letter, a batch that raises is transformed again one record
        at a time, and only the records that raise alone are dead-lettered."""
        transform_batch = getattr(self.connector, "transform_batch")  # noqa: B009
        with origin_of(Origin(batch.source.alias, None, None)):
            try:
                result = await transform_batch(batch.records)
            except Exception as exc:
                if not self._dead_letters_errors(exc):
                    raise
                result = None
                for record, (partition, offset) in zip(batch.records, batch.origins, strict=True):
                    try:
                        await self._emit(await transform_batch([record]), dead_letter_invalid=True)
                    except Exception as one:
                        if not self._dead_letters_errors(one):
                            raise
                        raw = record.model_dump(mode="json")
                        invalid = InvalidRecord(partition, offset, raw, _raised(one))
                        await self.dead_letter(batch.source.alias, invalid)
            await self._emit(result, dead_letter_invalid=True)

    def _dead_letters_errors(self, exc: Exception) -> bool:
        """Whether a transform's exception dead-letters its input (the opt-in policy) rather than stopping.
        The framework's own errors (Foundry, configuration) always stop: they are not about the record."""
        policy = self.connector.env.runtime.on_transform_error
        return policy == "dead_letter" and not isinstance(exc, FoundryError | ConfigError)

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
            raise ConfigError(_NO_DEFAULT_OUTPUT.format(type(self.connector).__name__))
        if not dead_letter_invalid:
            await output.publish_many(records)
            return
        try:
            await output.publish_many(records)  # all at once; one by one only when one is invalid
            return
        except RecordValidationError:
            pass
        for record in records:
            try:
                await output.publish(record)
            except RecordValidationError as exc:
                raw = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
                error = f"transform output for {exc.alias!r} is invalid: {exc.message}"
                await self.dead_letter(output.alias, InvalidRecord(None, None, raw, error))

    async def dead_letter(self, alias: str, invalid: InvalidRecord) -> None:
        dead = self.dead_letters
        self.log.error(
            "invalid record",
            source=alias,
            partition=invalid.partition,
            offset=invalid.offset,
            error=invalid.error,
            dead_letter=dead.alias if dead else None,
        )
        if dead is not None:
            await dead.send(alias, invalid.error, invalid.raw, partition=invalid.partition, offset=invalid.offset)


_NO_DEFAULT_OUTPUT = (
    "{}'s transform returned records but the connector does not have exactly one StreamOutput: publish "
    "explicitly with `await self.<output>.publish(record)`"
)


@dataclass
class _Held:
    """Records transforms of `batch` returned, not yet published, and the index of the input record of each."""

    batch: InputBatch[Any]
    results: list[Any]
    owners: list[int]


def _raised(exc: Exception) -> str:
    return f"transform raised {type(exc).__name__}: {exc}"
