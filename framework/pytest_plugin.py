"""The pytest plugin of foundry-connectors: the `foundry` fixture, an in-process fake Foundry per test.

Registered by the distribution (entry point `pytest11`, so pytest loads it wherever foundry-connectors and
pytest are installed); the fixture needs pytest-asyncio, which `pip install 'foundry-connectors[testing]'`
brings. `foundry` is a started `framework.testing.FakeFoundry` with its state in the test's `tmp_path`,
stopped after the test. Disable the plugin with `-p no:foundry-connectors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .testing import FakeFoundry

try:
    import pytest_asyncio
except ImportError:  # pytest without the testing extra: the fixture says what to install when used
    HAVE_ASYNCIO = False
else:
    HAVE_ASYNCIO = True


async def _foundry(tmp_path: Path) -> AsyncIterator[FakeFoundry]:
    from .testing import FakeFoundry

    async with FakeFoundry(tmp_path) as fake:
        yield fake


if HAVE_ASYNCIO:
    foundry = pytest_asyncio.fixture(_foundry, name="foundry")
else:

    @pytest.fixture(name="foundry")
    def _missing(tmp_path: Path) -> Any:
        pytest.fail("the `foundry` fixture needs pytest-asyncio: pip install 'foundry-connectors[testing]'")
