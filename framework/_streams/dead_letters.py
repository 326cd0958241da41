"""Dead letters: where records the connector could not process go, with where they came from and why."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from .output import StreamOutput


class DeadLetter(BaseModel):
    """A record the connector could not process, with where it came from and why."""

    source: str
    partition: str | None = None
    offset: int | None = None
    error: str
    raw: str
    connector: str
    time: str


class DeadLetterOutput(StreamOutput[DeadLetter]):
    """Where invalid records go instead of being dropped: declare one and the connector keeps going.

    The stream needs the `DeadLetter` schema (`framework.stream_schema(DeadLetter)`). `raw` is cut to
    `MAX_RAW_CHARS` (saying so and how long it was), so a record rejected for its size fits in a dead letter.
    """

    def __init__(self, alias: str, *, batch_size: int | None = None, linger_ms: float | None = None) -> None:
        super().__init__(alias, model=DeadLetter, batch_size=batch_size, linger_ms=linger_ms)

    async def send(
        self, source: str, error: str, raw: Any, *, partition: str | None = None, offset: int | None = None
    ) -> None:
        await self.publish(
            DeadLetter(
                source=source,
                partition=partition,
                offset=offset,
                error=error,
                raw=_bounded(raw if isinstance(raw, str) else json.dumps(raw, default=_json_default)),
                connector=self.binding.connector_name,
                time=datetime.now(UTC).isoformat(timespec="milliseconds"),
            )
        )


#: How much of a record a dead letter keeps: far under any stream's record limit (1 MiB on Foundry).
MAX_RAW_CHARS = 64 * 1024


def _bounded(raw: str) -> str:
    if len(raw) <= MAX_RAW_CHARS:
        return raw
    return f"{raw[:MAX_RAW_CHARS]}... [cut: {len(raw)} characters in all]"


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)
