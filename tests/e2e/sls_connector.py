"""The doubler, logging a source URL with a password in it at setup (which the logs must never show)."""

from __future__ import annotations

from connectors.doubler import Doubler

SOURCE_URL = "https://ingest:url-pass-9c1e@source.example.test/v1/items?api_key=query-key-77b0&page=1"


class LoudDoubler(Doubler):
    name = "loud-doubler"

    async def setup(self) -> None:
        self.log.info("source configured", url=SOURCE_URL)
