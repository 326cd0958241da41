"""A connector's own settings (`settings_model`, `load_settings`) and handle options (`configure`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from framework import Connector, DatasetOutput, StreamOutput, load_settings
from framework._errors import ConfigError
from framework._http import FoundryClient

from .stream_mocks import Doubled, make_env


class Tuning(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TUNING_", extra="ignore")

    rows: int = Field(10, ge=1)


def test_load_settings_reads_only_the_mapping_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNING_ROWS", "7")
    assert load_settings(Tuning, {}).rows == 10
    assert load_settings(Tuning, {"TUNING_ROWS": "3"}).rows == 3
    assert load_settings(Tuning).rows == 7  # os.environ only when no mapping is given


def test_load_settings_errors_are_one_line_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(Tuning, {"TUNING_ROWS": "0"})
    message = str(caught.value)
    assert message.startswith("TUNING_ROWS='0' is invalid: ") and "\n" not in message


class Tuned(Connector):
    settings_model = Tuning
    settings: Tuning
    out = StreamOutput[Doubled]("doubled")

    async def run(self) -> None:
        return None


def test_settings_model_is_read_from_the_environment_the_connector_was_given(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    env.environ = {"TUNING_ROWS": "4"}
    assert Tuned(env, FoundryClient(env)).settings.rows == 4
    env.environ = {"TUNING_ROWS": "none"}
    with pytest.raises(ConfigError, match=r"^TUNING_ROWS='none' is invalid"):
        Tuned(env, FoundryClient(env))


def test_configure_validates_like_the_constructor_and_changes_nothing_on_error() -> None:
    out = DatasetOutput("archive", flush_rows=10)
    assert out.configure(flush_rows=20, flush_interval_s=1.5) is out
    assert (out.flush_rows, out.flush_interval_s) == (20, 1.5)
    with pytest.raises(ConfigError, match="sizes and counts must be at least 1"):
        out.configure(flush_rows=0)
    with pytest.raises(ConfigError, match="flush_interval_s must be positive"):
        out.configure(flush_interval_s=0)
    with pytest.raises(ConfigError, match=r"DatasetOutput\('archive'\).configure\(\).*flush_everything"):
        out.configure(flush_everything=True)
    assert (out.flush_rows, out.flush_interval_s) == (20, 1.5)


def test_configure_on_a_bound_handle_changes_that_connector_only(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    first, second = Tuned(env, FoundryClient(env)), Tuned(env, FoundryClient(env))
    first.out.configure(batch_size=7)
    assert first.out.model is Doubled  # the subscripted model survives
    assert first.out.batch_size == 7
    assert second.out.batch_size == env.runtime.publish_batch_size
    assert dict(Tuned.out._options) == {}
