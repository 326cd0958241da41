"""The README's testing tutorial is code users copy: run it as written, so it cannot rot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"


def _example_after(heading: str) -> str:
    section = README.read_text().split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"the README lost its example after {heading!r}"
    return match.group(1)


async def test_readme_testing_example_runs(tmp_path: Path) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(_example_after("### 2. Test it against the fake"), str(README), "exec"), namespace)
    await namespace["test_doubler"](tmp_path)


async def test_readme_function_mode_example_runs(tmp_path: Path) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(_example_after("Test it against the fake, in-process:"), str(README), "exec"), namespace)
    await namespace["test_geo"](tmp_path)
