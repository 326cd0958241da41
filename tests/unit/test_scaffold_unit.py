"""`connector init` writes a project (the full install-and-run path is tests/e2e/test_project_venv_e2e.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from fake_stream_proxy.stack import load_stack
from framework._scaffold import FILES, names
from framework.cli import main


def test_names_of_a_project() -> None:
    assert names("my-sensor") == {"name": "my-sensor", "package": "my_sensor", "class": "MySensor"}
    assert names("Orders_Sync") == {"name": "orders-sync", "package": "orders_sync", "class": "OrdersSync"}


@pytest.mark.parametrize("bad", ["1abc", "a b", "framework", "class", "x/y"])
def test_a_bad_name_is_one_line_and_exit_2(bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", bad, "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("connector init: ") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_init_writes_every_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "my-sensor", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "my-sensor"
    written = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert written == {d.replace("{{package}}", "my_sensor") for d in FILES.values()} | {
        "my_sensor/__init__.py",
        "wheels/README",
    }
    assert not [p for p in root.rglob("*") if p.is_file() and "{{" in p.read_text()]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["dependencies"] == ["foundry-connectors>=0.1,<0.2"]
    assert project["project"]["optional-dependencies"]["testing"] == ["foundry-connectors[testing]>=0.1,<0.2"]
    assert project["tool"]["pytest"]["ini_options"]["asyncio_mode"] == "auto"
    stack = load_stack(root / "stack.yaml")  # its models do not import from here: only the shape is checked
    assert set(stack.streams) == {"readings", "scaled", "dead_letters"}
    assert stack.jobs["my_sensor"].connector == "my_sensor.connector:MySensor"
    assert "pip install --find-links wheels" in capsys.readouterr().out
    assert main(["init", "my-sensor", "--dir", str(tmp_path)]) == 2  # not over an existing project
    assert "already exists" in capsys.readouterr().err


def test_framework_path_puts_the_wheel_in_wheels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wheel = tmp_path / "foundry_connectors-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    monkeypatch.setenv("FOUNDRY_CONNECTORS_PATH", str(wheel))
    assert main(["init", "a", "--dir", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "a" / "wheels" / wheel.name).read_bytes() == b"not really a wheel"
    assert main(["init", "b", "--dir", str(tmp_path), "--framework-path", str(tmp_path / "nowhere")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "plain.txt").write_text("")
    assert main(["init", "c", "--dir", str(tmp_path), "--framework-path", str(tmp_path / "plain.txt")]) == 2
    assert "neither a wheel" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # nothing half-created


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert re.fullmatch(r"connector \d+\.\d+\.\d+\n", capsys.readouterr().out)
