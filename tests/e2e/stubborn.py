"""Connectors for runtime tests that need a real `connector run` process (importable as tests.e2e.stubborn)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from framework import Connector, StreamOutput


class Tick(BaseModel):
    n: int


class Stubborn(Connector):
    """Ignores shutdown: the runtime must still exit once CONNECTOR_SHUTDOWN_TIMEOUT_S has passed."""

    ticks = StreamOutput[Tick]("ticks")

    async def run(self) -> None:
        await self.ticks.publish(Tick(n=1))
        await self.ticks.flush()
        print("STARTED", flush=True)
        await asyncio.Event().wait()  # never looks at self.stopping; only cancellation ends it
