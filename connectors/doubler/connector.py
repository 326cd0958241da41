"""Reads `{"x": int}` from alias `numbers`, writes `{"twice_x": int}` to alias `doubled`.

The hand-written version in Foundry's docs polls with one blocking GET, POSTs one record at a time,
sleeps 60 s and forgets where it was. Here the framework reads through a subscriber (resuming after the
last committed batch), publishes in batches, commits only after the output acknowledged, retries faults,
and sends records that are not `{"x": int}` to `dead_letters` with their offsets instead of crashing.

Run it: `connector run connectors.doubler:Doubler`
"""

from __future__ import annotations

from pydantic import BaseModel

from framework import Connector, DeadLetterOutput, StreamInput, StreamOutput


class Number(BaseModel):
    x: int


class Doubled(BaseModel):
    twice_x: int


class Doubler(Connector):
    numbers = StreamInput[Number]("numbers")
    doubled = StreamOutput[Doubled]("doubled")
    dead_letters = DeadLetterOutput("dead_letters")

    async def transform(self, record: Number) -> Doubled:
        return Doubled(twice_x=record.x * 2)
