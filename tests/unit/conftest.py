"""Unit-test fixtures shared by every file that mocks HTTP with aioresponses."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from yarl import URL


class _SentWriter:
    output_size = 0


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 does not pass the `stream_writer` aiohttp 3.14 requires (aioresponses issue #289)."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _SentWriter())
        super().__init__(method, url, **kwargs)


@pytest.fixture(autouse=True)
def _aioresponses_compat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aioresponses.core.ClientResponse", _CompatResponse)
