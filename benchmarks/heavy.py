"""A CPU-heavy doubler for the workers benchmark: each record costs about 50 us of pure Python."""

from __future__ import annotations

import time

from connectors.doubler import Doubled, Number
from framework import Connector, DeadLetterOutput, StreamInput, StreamOutput

COST_S = 50e-6


class HeavyDoubler(Connector):
    numbers = StreamInput[Number]("numbers")
    doubled = StreamOutput[Doubled]("doubled")
    dead_letters = DeadLetterOutput("dead_letters")

    async def transform(self, record: Number) -> Doubled:
        until = time.perf_counter() + COST_S
        while time.perf_counter() < until:
            pass
        return Doubled(twice_x=record.x * 2)
