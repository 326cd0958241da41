"""A user's own project, end to end: `connector init`, a fresh virtualenv, pip install, its tests, `connector run`.

One venv for the module (slow: pip builds this repository's wheel and installs into it from the package
registries); it is what a user does on day one, so it runs in `make test` too (marker `venv`).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from framework.testing import FakeFoundry

from .connector_process import ConnectorProcess

pytestmark = [pytest.mark.venv, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Project:
    root: Path
    venv: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, f"{' '.join(args)} -> {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    work = tmp_path_factory.mktemp("own-project")
    source = work / "foundry-connectors"  # a clean copy: no .venv, build/ or egg-info in the wheel's source
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("framework", "fake_stream_proxy"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    _run(sys.executable, "-m", "framework.cli", "init", "demo-sensor", "--framework-path", str(source), cwd=work)
    root = work / "demo-sensor"
    _run(sys.executable, "-m", "venv", str(work / "venv"), cwd=work)
    pip = str(work / "venv" / "bin" / "pip")
    _run(pip, "install", "--quiet", "--find-links", str(root / "wheels"), "-e", f"{root}[testing]", cwd=root)
    yield Project(root, work / "venv")


def test_the_generated_tests_pass_out_of_the_box(project: Project) -> None:
    done = _run(project.bin("pytest"), "-q", "-p", "no:cacheprovider", cwd=project.root)
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout


def test_the_examples_are_not_installed(project: Project) -> None:
    done = subprocess.run(
        [project.bin("python"), "-c", "import connectors"], cwd=project.root, capture_output=True, text=True
    )
    assert done.returncode != 0 and "No module named 'connectors'" in done.stderr
    _run(project.bin("python"), "-c", "import framework, fake_stream_proxy, framework.pytest_plugin", cwd=project.root)
    version = _run(project.bin("connector"), "--version", cwd=project.root)
    assert version.stdout.strip() == "connector 0.1.0"


def test_the_installed_wheel_carries_the_templates_and_the_stack_file_loads(project: Project, tmp_path: Path) -> None:
    _run(project.bin("connector"), "init", "second", "--dir", str(tmp_path), cwd=tmp_path)
    assert (tmp_path / "second" / "second" / "connector.py").is_file()
    loads = (
        "from pathlib import Path; from fake_stream_proxy.stack import load_stack, _schema; "
        "s = load_stack(Path('stack.yaml')); "
        "print(sorted(n for n, spec in s.streams.items() if _schema(n, spec)))"
    )
    done = _run(project.bin("python"), "-c", loads, cwd=project.root)
    assert done.stdout.strip() == "['dead_letters', 'readings', 'scaled']"


def test_schema_prints_what_the_stack_file_declares(project: Project) -> None:
    done = _run(project.bin("connector"), "schema", "demo_sensor.connector:DemoSensor", cwd=project.root)
    schemas = json.loads(done.stdout)
    assert set(schemas) == {"readings", "scaled", "dead_letters"}
    assert [f["name"] for f in schemas["readings"]["schema"]["fields"]] == ["sensor", "value"]


async def test_connector_run_from_the_project_folder_against_the_fake(project: Project, tmp_path: Path) -> None:
    printed = _run(project.bin("connector"), "schema", "demo_sensor.connector:DemoSensor", cwd=project.root)
    schemas = {alias: entry["schema"] for alias, entry in json.loads(printed.stdout).items()}
    async with FakeFoundry(tmp_path) as foundry:
        rids = {alias: await foundry.create_stream(alias, schema=schema) for alias, schema in schemas.items()}
        job = await foundry.job(inputs={"readings": rids["readings"]},
                                outputs={"scaled": rids["scaled"], "dead_letters": rids["dead_letters"]})  # fmt: skip
        await foundry.publish(rids["readings"], [{"sensor": "a", "value": i} for i in range(5)])
        log = tmp_path / "connector.log"
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                project.bin("connector"), "run", "demo_sensor.connector:DemoSensor",
                cwd=project.root, env={**job.environ, "PATH": str(project.venv / "bin")}, stdout=out, stderr=out,
            )  # fmt: skip
        running = ConnectorProcess(process, log)
        try:
            found = await foundry.wait_for_records(rids["scaled"], 5, timeout_s=60)
        finally:
            code = await running.stop(timeout_s=60)
        assert code == 0, running.output()
        assert sorted(r["value"]["scaled"] for r in found) == [0.0, 10.0, 20.0, 30.0, 40.0]


def test_the_docstring_example_passes_in_strict_mode_outside_any_project(project: Project, tmp_path: Path) -> None:
    """No pytest configuration at all (pytest-asyncio's strict mode): the plugin's `foundry` fixture and the
    example's own `@pytest.mark.asyncio` are all it takes."""
    from .test_testing_kit_e2e import docstring_example

    (tmp_path / "test_example.py").write_text(docstring_example())
    done = _run(project.bin("pytest"), "-q", "-p", "no:cacheprovider", "test_example.py", cwd=tmp_path)
    assert "1 passed" in done.stdout, done.stdout
