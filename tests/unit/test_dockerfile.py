"""A compute module image's rules, checked by parsing the Dockerfile (no Docker engine here): this repository's,
and the one `connector init` writes for a user's project."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from framework._scaffold import init_project

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=["repository", "scaffold"])
def dockerfile(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if request.param == "repository":
        return ROOT / "Dockerfile"
    parent = tmp_path_factory.mktemp("init")
    init_project("my-sensor", parent)
    return parent / "my-sensor" / "Dockerfile"


@pytest.fixture
def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = dockerfile.read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_the_build_context_leaves_out_the_virtualenv(dockerfile: Path) -> None:
    ignored = (dockerfile.parent / ".dockerignore").read_text().splitlines()
    assert {".venv/", ".git/", "**/__pycache__/"} <= set(ignored)


def test_the_scaffold_copies_only_what_exists(tmp_path: Path) -> None:
    init_project("my-sensor", tmp_path)
    root = tmp_path / "my-sensor"
    for line in (root / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in shlex.split(line)[1:-1]:
                assert (root / source).exists(), f"COPY {source}: not in the project"


def test_base_image_is_amd64_and_pinned(instructions: list[tuple[str, str]]) -> None:
    froms = [rest for kw, rest in instructions if kw == "FROM"]
    assert froms, "no FROM"
    for rest in froms:
        assert "--platform=linux/amd64" in rest
        image = next(part for part in rest.split() if not part.startswith("--"))
        assert ":" in image, f"{image} has no tag"
        assert not image.endswith(":latest")


def test_user_is_numeric_and_not_root(instructions: list[tuple[str, str]]) -> None:
    users = [rest for kw, rest in instructions if kw == "USER"]
    assert users, "no USER: the image would run as root"
    assert re.fullmatch(r"\d+(:\d+)?", users[-1]), f"USER {users[-1]} is not numeric"
    assert int(users[-1].split(":")[0]) != 0


def test_entrypoint_is_connector_run(instructions: list[tuple[str, str]]) -> None:
    entrypoints = [rest for kw, rest in instructions if kw == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["connector", "run"]
    cmd = [rest for kw, rest in instructions if kw == "CMD"]
    assert cmd and re.fullmatch(r"[\w.]+:\w+", json.loads(cmd[-1])[0])


@pytest.mark.parametrize("kw", ["EXPOSE"])
def test_exposed_ports_in_range(kw: str, instructions: list[tuple[str, str]]) -> None:
    for rest in (rest for k, rest in instructions if k == kw):
        for port in shlex.split(rest):
            assert 1024 <= int(port.split("/")[0]) <= 65535


def test_base_has_a_shell(instructions: list[tuple[str, str]]) -> None:
    # slim Debian images ship /bin/sh; distroless or scratch would not.
    image = [rest for kw, rest in instructions if kw == "FROM"][-1]
    assert "distroless" not in image and "scratch" not in image
