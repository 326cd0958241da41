"""`connector init NAME`: a new connector project that installs, tests, runs and builds an image out of the box.

The templates are package data (`framework/_templates/*.tmpl`); `{{key}}` placeholders are replaced, nothing
else is interpreted. The project depends on `foundry-connectors` by name, so the same pyproject.toml serves a
laptop, CI and the image. With no package index holding foundry-connectors, its wheel goes in the project's
`wheels/` folder and every install says `--find-links wheels` (the Dockerfile does): `--framework-path` (or
FOUNDRY_CONNECTORS_PATH) puts it there, copying a `.whl` or building one from a checkout.
"""

from __future__ import annotations

import keyword
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from ._errors import ConfigError

#: The environment variable `--framework-path` defaults to.
FRAMEWORK_PATH_VAR = "FOUNDRY_CONNECTORS_PATH"
DISTRIBUTION = "foundry-connectors"
_REQUIREMENT = f"{DISTRIBUTION}>=0.1,<0.2"
_RESERVED = {"framework", "fake_stream_proxy", "tests", "test", "wheels"}

#: template -> where it goes in the project (`{{package}}` is replaced in the path too).
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "connector.py.tmpl": "{{package}}/connector.py",
    "test_connector.py.tmpl": "tests/test_connector.py",
    "Dockerfile.tmpl": "Dockerfile",
    "dockerignore.tmpl": ".dockerignore",
    "gitignore.tmpl": ".gitignore",
    "stack.yaml.tmpl": "stack.yaml",
}


def names(name: str) -> dict[str, str]:
    """The project's distribution name, Python package and connector class for NAME (`my-sensor`)."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name):
        raise ConfigError(
            f"project name {name!r} must start with a letter and hold only letters, digits, '-' and '_' "
            "(e.g. my-sensor)"
        )
    package = name.lower().replace("-", "_")
    if keyword.iskeyword(package) or package in _RESERVED:
        raise ConfigError(f"project name {name!r} would make a package {package!r}, which is reserved; choose another")
    words = [w for w in re.split(r"[_-]+", name) if w]
    cls = "".join(w[:1].upper() + w[1:] for w in words)
    return {"name": name.lower().replace("_", "-"), "package": package, "class": cls}


def add_wheel(framework_path: str, wheels: Path) -> None:
    """Put foundry-connectors' wheel in `wheels/`: a copy of a `.whl`, or one built from a checkout."""
    path = Path(framework_path).expanduser().resolve()
    if path.is_file() and path.suffix == ".whl":
        shutil.copy2(path, wheels)
        return
    if not (path.is_dir() and (path / "pyproject.toml").is_file()):
        raise ConfigError(
            f"--framework-path {framework_path}: neither a wheel (.whl) nor a checkout with pyproject.toml"
        )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        last = (built.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise ConfigError(f"--framework-path {framework_path}: building its wheel failed: {last}")


def render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def init_project(name: str, parent: Path, framework_path: str | None = None) -> Path:
    """Write the project NAME under `parent`; returns its folder. Refuses a folder that exists and is not empty."""
    values = names(name)
    target = parent / name
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} already exists and is not empty; choose another name or remove it")
    if framework_path and not Path(framework_path).expanduser().exists():
        raise ConfigError(f"--framework-path {framework_path}: no such file or folder (a checkout or a .whl)")
    values["requirement"], values["testing_requirement"] = _REQUIREMENT, f"{DISTRIBUTION}[testing]>=0.1,<0.2"
    templates = resources.files("framework") / "_templates"
    rendered = {render(dest, values): render((templates / src).read_text(), values) for src, dest in FILES.items()}
    existed = target.exists()
    try:
        _write(target, values, rendered, framework_path)
    except BaseException:
        if not existed:  # nothing half-created
            shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def _write(target: Path, values: dict[str, str], rendered: dict[str, str], framework_path: str | None) -> None:
    for dest, text in rendered.items():
        path = target / dest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (target / values["package"] / "__init__.py").write_text(
        f'"""{values["class"]}: see connector.py."""\n\nfrom .connector import {values["class"]}\n\n'
        f'__all__ = ["{values["class"]}"]\n'
    )
    wheels = target / "wheels"
    wheels.mkdir()
    (wheels / "README").write_text(
        "Wheels pip installs from (--find-links wheels): pip wheel --no-deps -w wheels DIR\n"
    )
    if framework_path:
        add_wheel(framework_path, wheels)
