"""Every bad environment stops the real `connector run` process with ONE line naming the problem, exit code 2.

All cases run as concurrent processes once per module (starting Python is most of the cost); each case is then
its own test. None reaches the network: FOUNDRY_URL points at a closed port, and every case fails earlier.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
SPEC = "connectors.doubler:Doubler"
TOKEN = "job-token-3f9a7c1e5b"  # must never appear in any output
ALIASES = {
    "numbers": {"rid": "ri.foundry.main.dataset.n", "branch": None},
    "doubled": {"rid": "ri.foundry.main.dataset.d", "branch": "master"},
    "dead_letters": {"rid": "ri.foundry.main.dataset.l"},
}
UNSET = "<unset>"


@dataclass(frozen=True)
class Case:
    id: str
    env: dict[str, str] = field(default_factory=dict)  # "{dir}" is the case's folder; UNSET removes the variable
    files: dict[str, str] = field(default_factory=dict)  # name -> content, written in the case's folder
    expect: tuple[str, ...] = ()  # what the one line must mention ("{dir}" replaced)
    spec: str = SPEC


CASES = [
    Case("token-unset", {"BUILD2_TOKEN": UNSET}, expect=("BUILD2_TOKEN is not set",)),
    Case("token-file-missing", {"BUILD2_TOKEN": "{dir}/no-token"}, expect=("BUILD2_TOKEN", "{dir}/no-token")),
    Case("token-file-empty", {"BUILD2_TOKEN": "{dir}/empty"}, {"empty": "\n"}, expect=("BUILD2_TOKEN", "empty")),
    Case("alias-map-unset", {"RESOURCE_ALIAS_MAP": UNSET}, expect=("RESOURCE_ALIAS_MAP is not set",)),
    Case(
        "alias-map-missing",
        {"RESOURCE_ALIAS_MAP": "{dir}/nope.json"},
        expect=("RESOURCE_ALIAS_MAP", "{dir}/nope.json", "does not exist"),
    ),
    Case(
        "alias-map-not-json",
        {"RESOURCE_ALIAS_MAP": "{dir}/bad.json"},
        # The file's content (here holding the token) is never quoted.
        {"bad.json": '{"numbers": {"rid": ' + TOKEN + "}"},
        expect=("RESOURCE_ALIAS_MAP", "not valid JSON", "line 1"),
    ),
    Case(
        "alias-entry-without-rid",
        {"RESOURCE_ALIAS_MAP": "{dir}/norid.json"},
        {"norid.json": json.dumps({**ALIASES, "doubled": {"branch": "master"}})},
        expect=("'doubled'", '"rid"', "RESOURCE_ALIAS_MAP"),
    ),
    Case(
        "declared-alias-missing",
        {"RESOURCE_ALIAS_MAP": "{dir}/partial.json"},
        {"partial.json": json.dumps({k: v for k, v in ALIASES.items() if k != "dead_letters"})},
        expect=("'dead_letters'", "RESOURCE_ALIAS_MAP", "doubled, numbers"),
    ),
    Case("no-foundry-address", {"FOUNDRY_URL": UNSET}, expect=("FOUNDRY_SERVICE_DISCOVERY_V2", "FOUNDRY_URL")),
    Case("foundry-url-malformed", {"FOUNDRY_URL": "ftp://foundry.example"}, expect=("FOUNDRY_URL", "ftp://")),
    Case(
        "foundry-url-with-credentials",
        {"FOUNDRY_URL": f"https://user:{TOKEN}@foundry.example"},
        expect=("FOUNDRY_URL must not contain credentials",),
    ),
    Case("ca-file-missing", {"DEFAULT_CA_PATH": "{dir}/ca.pem"}, expect=("DEFAULT_CA_PATH", "{dir}/ca.pem")),
    Case(
        "bad-batch-size",
        {"CONNECTOR_READ_BATCH_SIZE": "lots"},
        expect=("CONNECTOR_READ_BATCH_SIZE", "'lots'", "fix it or unset it"),
    ),
    Case("http-port-privileged", {"CONNECTOR_HTTP_PORT": "80"}, expect=("CONNECTOR_HTTP_PORT", "'80'")),
    Case("bad-log-level", {"CONNECTOR_LOG_LEVEL": "loud"}, expect=("CONNECTOR_LOG_LEVEL", "'loud'")),
    Case("spec-without-class", spec="nope", expect=("'nope'", "package.module:ClassName")),
    Case("spec-no-such-module", spec="no.such.module:X", expect=("'no.such.module'",)),
    Case("spec-not-a-connector", spec="connectors.doubler:Number", expect=("connectors.doubler:Number", "Connector")),
]
# Valid but for the unreachable Foundry: fails connecting (exit 1), after one quick attempt.
CONTROL = Case("control", {"CONNECTOR_RETRY_MAX_ATTEMPTS": "1", "CONNECTOR_HTTP_TIMEOUT_S": "2"})


@dataclass
class Result:
    code: int
    output: str
    folder: Path


def base_environ(folder: Path) -> dict[str, str]:
    token, aliases = folder / "token", folder / "aliases.json"
    token.write_text(TOKEN + "\n")
    aliases.write_text(json.dumps(ALIASES))
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH", "SYSTEMROOT")}
    return {
        **keep,
        "BUILD2_TOKEN": str(token),
        "RESOURCE_ALIAS_MAP": str(aliases),
        "FOUNDRY_URL": "http://127.0.0.1:9",  # never reached: every case fails before connecting
        "CONNECTOR_LOG_FORMAT": "json",
    }


def prepare(case: Case, folder: Path) -> dict[str, str]:
    """The case's folder and files; returns its environment."""
    folder.mkdir(parents=True)
    environ = base_environ(folder)
    for name, content in case.files.items():
        (folder / name).write_text(content)
    for name, value in case.env.items():
        if value == UNSET:
            environ.pop(name, None)
        else:
            environ[name] = value.replace("{dir}", str(folder))
    return environ


async def run_case(case: Case, folder: Path, environ: dict[str, str]) -> Result:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "framework.cli",
        "run",
        case.spec,
        env=environ,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Result(process.returncode, out.decode(errors="replace"), folder)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    root = tmp_path_factory.mktemp("bad-env")

    async def run_all() -> dict[str, Result]:
        done = await asyncio.gather(*(run_case(case, root / case.id, environ) for case, environ in prepared))
        return {case.id: result for (case, _), result in zip(prepared, done, strict=True)}

    prepared = [(case, prepare(case, root / case.id)) for case in [*CASES, CONTROL]]

    return asyncio.run(run_all())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_environment_gives_one_line_and_exit_code_2(case: Case, results: dict[str, Result]) -> None:
    result = results[case.id]
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.code == 2, result.output
    assert len(lines) == 1, result.output
    event = json.loads(lines[0])
    assert event["level"] == "error" and event["event"] == "configuration error", event
    message = event["error"]
    assert "\n" not in message
    for expected in case.expect:
        assert expected.replace("{dir}", str(result.folder)) in message, message
    assert TOKEN not in result.output


def test_the_same_environment_without_a_fault_gets_past_configuration(results: dict[str, Result]) -> None:
    """Control: every case above differs from a base environment that is valid (it fails only on connecting)."""
    result = results[CONTROL.id]
    assert result.code == 1, result.output  # a Foundry connection failure, not a configuration error
    assert "configuration error" not in result.output
    assert TOKEN not in result.output
