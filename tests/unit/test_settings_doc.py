"""Every CONNECTOR_* variable is in the README's table (generated from the settings model), and a misspelt one warns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.sensor_minutes import Reading
from framework import Connector, DatasetOutput, StreamInput
from framework._env.settings import RuntimeSettings
from framework._env.settings_doc import END, START, known_variables, replace_table, settings_table, unknown_variables
from framework._runtime import main_run

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_table_is_the_generated_one() -> None:
    text = README.read_text()
    assert replace_table(text) == text, (
        "the README's settings table is out of date: python -m framework._env.settings_doc README.md"
    )


def test_every_setting_is_in_the_table() -> None:
    table = settings_table()
    for name in RuntimeSettings.model_fields:
        assert f"`CONNECTOR_{name.upper()}`" in table
    assert "CONNECTOR_POLL_INTERVAL_MS" in known_variables() and "CONNECTOR_RETRY_MAX_BACKOFF_S" in known_variables()


def test_replace_table_needs_the_markers() -> None:
    with pytest.raises(ValueError, match="markers"):
        replace_table("no table here")
    assert replace_table(f"a\n{START}\nold\n{END}\nb") == f"a\n{START}\n{settings_table()}\n{END}\nb"


def test_an_unknown_variable_names_the_closest_valid_one() -> None:
    assert unknown_variables({"CONNECTOR_READ_BATCH_SIZ": "10", "CONNECTOR_LOG_LEVEL": "INFO", "PATH": "/bin"}) == [
        "CONNECTOR_READ_BATCH_SIZ is not a connector setting and is ignored; did you mean CONNECTOR_READ_BATCH_SIZE?"
    ]
    assert "settings table" in unknown_variables({"CONNECTOR_ZZZZZZZZZZZZZZZZZZZZ": "1"})[0]


def test_connector_run_warns_about_it(capsys: pytest.CaptureFixture[str]) -> None:
    code = main_run(
        "connectors.doubler:Doubler", environ={"CONNECTOR_READ_BATCH_SIZ": "10", "CONNECTOR_LOG_FORMAT": "json"}
    )
    assert code == 2  # no environment: a configuration error, after the warning
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    warnings = [e for e in events if e["event"] == "unknown setting"]
    assert len(warnings) == 1 and "did you mean CONNECTOR_READ_BATCH_SIZE?" in warnings[0]["warning"]


def test_workers_with_a_snapshot_mode_dataset_output_is_one_configuration_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Daily(Connector):
        readings = StreamInput[Reading]("readings")
        daily = DatasetOutput("daily", mode="snapshot")

        async def transform(self, reading: Reading) -> None:
            return None

    code = main_run(Daily, environ={"CONNECTOR_WORKERS": "2", "CONNECTOR_LOG_FORMAT": "json"})
    assert code == 2
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    errors = [e for e in events if e["event"] == "configuration error"]
    assert len(errors) == 1
    assert errors[0]["error"].startswith("CONNECTOR_WORKERS=2: dataset output 'daily' has mode='snapshot'")
