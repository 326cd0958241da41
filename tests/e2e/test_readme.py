"""The README's testing tutorial is code users copy: run it as written, so it cannot rot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"


def _tutorial_test() -> str:
    section = README.read_text().split("### 2. Test it against the fake", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README lost its testing example"
    return match.group(1)


async def test_readme_testing_example_runs(tmp_path: Path) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(_tutorial_test(), str(README), "exec"), namespace)
    await namespace["test_doubler"](tmp_path)
