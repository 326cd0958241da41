"""Environment loading: every bad environment fails with one line naming the variable or file."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest

from framework._env.environment import (
    Environment,
    ResourceRef,
    RuntimeSettings,
    SourceConfiguration,
    SourceCredentials,
    load_environment,
)
from framework._errors import ConfigError

TOKEN = "tok-secret-value-123"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """A valid pipeline environment: token file, alias map, FOUNDRY_URL."""
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    aliases = tmp_path / "aliases.json"
    aliases.write_text(
        json.dumps(
            {
                "numbers": {"rid": "ri.foundry.main.dataset.1", "branch": None},
                "doubled": {"rid": "ri.foundry.main.dataset.2", "branch": "dev", "extra": 1},
                "plain": {"rid": "ri.foundry.main.dataset.3"},
            }
        )
    )
    return {"BUILD2_TOKEN": str(token), "RESOURCE_ALIAS_MAP": str(aliases), "FOUNDRY_URL": "http://127.0.0.1:8080"}


def config_error(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_environment(environ)
    message = str(info.value)
    assert "\n" not in message, message
    assert TOKEN not in message
    return message


def test_valid_environment(files: dict[str, str]) -> None:
    env = load_environment(files)
    assert env.api_base == "http://127.0.0.1:8080/api"
    assert env.stream_proxy_base == "http://127.0.0.1:8080/api"
    assert env.read_token() == TOKEN
    assert env.ref("numbers") == ResourceRef("ri.foundry.main.dataset.1", "master")
    assert env.ref("doubled") == ResourceRef("ri.foundry.main.dataset.2", "dev")
    assert env.ref("plain").branch == "master"
    assert env.ca_path is None and env.ssl_context() is None
    assert env.runtime == RuntimeSettings.load({})
    assert TOKEN not in repr(env)


def test_token_is_read_now(files: dict[str, str]) -> None:
    env = load_environment(files)
    Path(files["BUILD2_TOKEN"]).write_text("  rotated \n")
    assert env.read_token() == "rotated"


def test_missing_token_variable(files: dict[str, str]) -> None:
    del files["BUILD2_TOKEN"]
    assert config_error(files) == (
        "BUILD2_TOKEN is not set: set it to the path of the job token file (Foundry sets it in pipeline mode)"
    )


def test_empty_variable_counts_as_unset(files: dict[str, str]) -> None:
    files["BUILD2_TOKEN"] = ""
    assert config_error(files).startswith("BUILD2_TOKEN is not set")


def test_token_file_missing(files: dict[str, str], tmp_path: Path) -> None:
    files["BUILD2_TOKEN"] = str(tmp_path / "nope")
    message = config_error(files)
    assert message.startswith(f"BUILD2_TOKEN {tmp_path / 'nope'} does not exist")


def test_token_file_is_directory(files: dict[str, str], tmp_path: Path) -> None:
    files["BUILD2_TOKEN"] = str(tmp_path)
    assert "BUILD2_TOKEN" in config_error(files) and "is not a file" in config_error(files)


def test_token_file_empty(files: dict[str, str]) -> None:
    Path(files["BUILD2_TOKEN"]).write_text(" \n")
    message = config_error(files)
    assert "BUILD2_TOKEN file" in message and "is empty" in message


def test_token_removed_after_load(files: dict[str, str]) -> None:
    env = load_environment(files)
    Path(files["BUILD2_TOKEN"]).unlink()
    with pytest.raises(ConfigError, match=r"\ABUILD2_TOKEN file .* does not exist[^\n]*\Z"):
        env.read_token()


def test_missing_alias_map_variable(files: dict[str, str]) -> None:
    del files["RESOURCE_ALIAS_MAP"]
    assert config_error(files).startswith("RESOURCE_ALIAS_MAP is not set: set it to the path")


def test_alias_map_file_missing(files: dict[str, str], tmp_path: Path) -> None:
    files["RESOURCE_ALIAS_MAP"] = str(tmp_path / "missing.json")
    assert config_error(files).startswith(f"RESOURCE_ALIAS_MAP {tmp_path / 'missing.json'} does not exist")


def test_alias_map_not_json(files: dict[str, str]) -> None:
    Path(files["RESOURCE_ALIAS_MAP"]).write_text('{\n  "a": {"rid": "x"},\n  oops\n}')
    message = config_error(files)
    assert message == (
        f"RESOURCE_ALIAS_MAP file {files['RESOURCE_ALIAS_MAP']} is not valid JSON (line 3): "
        'expected {"alias": {"rid": ..., "branch": ...}}'
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([1, 2], "RESOURCE_ALIAS_MAP file {path} is not a JSON object"),
        (
            {"numbers": {"branch": "master"}},
            "alias map entry 'numbers' has no \"rid\" in RESOURCE_ALIAS_MAP file {path}",
        ),
        ({"numbers": "ri.x"}, "alias map entry 'numbers' is not an object in RESOURCE_ALIAS_MAP file {path}"),
        (
            {"numbers": {"rid": ""}},
            "alias map entry 'numbers' has an invalid \"rid\" in RESOURCE_ALIAS_MAP file {path}",
        ),
        ({"numbers": {"rid": "r", "branch": 3}}, "alias map entry 'numbers' has an invalid \"branch\""),
    ],
)
def test_alias_map_malformed(files: dict[str, str], content: object, expected: str) -> None:
    path = files["RESOURCE_ALIAS_MAP"]
    Path(path).write_text(json.dumps(content))
    assert config_error(files).startswith(expected.format(path=path))


def test_unknown_alias(files: dict[str, str]) -> None:
    env = load_environment(files)
    with pytest.raises(ConfigError) as info:
        env.ref("nope")
    message = str(info.value)
    assert "\n" not in message
    assert f"alias 'nope' is not in RESOURCE_ALIAS_MAP ({files['RESOURCE_ALIAS_MAP']})" in message
    assert "doubled, numbers, plain" in message
    assert "add it to the job's inputs/outputs" in message


@pytest.mark.parametrize(
    ("value", "api", "stream"),
    [
        ("foundry.example.com", "https://foundry.example.com/api", "https://foundry.example.com/api"),
        ("foundry.example.com:8443", "https://foundry.example.com:8443/api", None),
        ("http://fake:8080/", "http://fake:8080/api", "http://fake:8080/api"),
        ("https://host.example.com/api", "https://host.example.com/api", "https://host.example.com/api"),
        ("https://host/foundry/", "https://host/foundry/api", "https://host/foundry/api"),
        ("http://[::1]:8080", "http://[::1]:8080/api", None),
        ("fake_stream_proxy:8080", "https://fake_stream_proxy:8080/api", None),
    ],
)
def test_foundry_url_forms(files: dict[str, str], value: str, api: str, stream: str | None) -> None:
    files["FOUNDRY_URL"] = value
    env = load_environment(files)
    assert env.api_base == api
    if stream is not None:
        assert env.stream_proxy_base == stream


def test_foundry_hostname_fallback(files: dict[str, str]) -> None:
    del files["FOUNDRY_URL"]
    files["FOUNDRY_HOSTNAME"] = "stack.example.com"
    assert load_environment(files).api_base == "https://stack.example.com/api"


@pytest.mark.parametrize("value", ["ht!tp:/x", "ftp://host", "http://", "host:99999", "host:port", "http://h/?q=1"])
def test_foundry_url_invalid(files: dict[str, str], value: str) -> None:
    files["FOUNDRY_URL"] = value
    assert config_error(files).startswith(f"FOUNDRY_URL {value!r} is not a host, host:port or http(s) URL")


def test_foundry_hostname_invalid_names_it(files: dict[str, str]) -> None:
    del files["FOUNDRY_URL"]
    files["FOUNDRY_HOSTNAME"] = "bad host"
    assert config_error(files).startswith("FOUNDRY_HOSTNAME 'bad host' is not a host")


def test_foundry_url_with_credentials_not_echoed(files: dict[str, str]) -> None:
    files["FOUNDRY_URL"] = "https://user:pa55word@host"
    message = config_error(files)
    assert message.startswith("FOUNDRY_URL must not contain credentials") and "pa55word" not in message


def test_no_foundry_address(files: dict[str, str]) -> None:
    del files["FOUNDRY_URL"]
    assert config_error(files) == "no Foundry address: set FOUNDRY_SERVICE_DISCOVERY_V2 or FOUNDRY_URL"


def test_service_discovery_takes_priority(files: dict[str, str], tmp_path: Path) -> None:
    discovery = tmp_path / "discovery.yml"
    discovery.write_text(
        "api-gateway:\n  - https://gw.example.com:8443/api\nstream_proxy:\n  - https://sp.example.com/stream-proxy/api/\n"
        "foundry_mio: [https://gw.example.com/mio/api]\n"
    )
    files["FOUNDRY_SERVICE_DISCOVERY_V2"] = str(discovery)
    env = load_environment(files)
    assert env.api_base == "https://gw.example.com:8443/api"
    assert env.stream_proxy_base == "https://sp.example.com/stream-proxy/api"


def test_service_discovery_uris_object_and_missing_stream_proxy(files: dict[str, str], tmp_path: Path) -> None:
    discovery = tmp_path / "discovery.yml"
    discovery.write_text("API_GATEWAY:\n  uris: [https://gw.example.com]\n")
    files["FOUNDRY_SERVICE_DISCOVERY_V2"] = str(discovery)
    env = load_environment(files)
    assert env.api_base == "https://gw.example.com/api"
    assert env.stream_proxy_base == env.api_base


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("api_gateway: [unclosed\n", "is not valid YAML (line 2)"),
        ("- a\n- b\n", "is not a YAML mapping"),
        ("stream_proxy: [https://sp/api]\n", "has no api_gateway entry"),
        ("api_gateway: []\n", "entry api_gateway has no URL"),
        ("api_gateway: ['ht!tp:/x']\n", "FOUNDRY_SERVICE_DISCOVERY_V2 api_gateway 'ht!tp:/x' is not a host"),
    ],
)
def test_service_discovery_malformed(files: dict[str, str], tmp_path: Path, content: str, expected: str) -> None:
    discovery = tmp_path / "discovery.yml"
    discovery.write_text(content)
    files["FOUNDRY_SERVICE_DISCOVERY_V2"] = str(discovery)
    message = config_error(files)
    assert message.startswith("FOUNDRY_SERVICE_DISCOVERY_V2") and expected in message


def test_service_discovery_file_missing(files: dict[str, str], tmp_path: Path) -> None:
    files["FOUNDRY_SERVICE_DISCOVERY_V2"] = str(tmp_path / "none.yml")
    assert config_error(files).startswith(f"FOUNDRY_SERVICE_DISCOVERY_V2 {tmp_path / 'none.yml'} does not exist")


def test_ca_path_missing(files: dict[str, str]) -> None:
    files["DEFAULT_CA_PATH"] = "/x"
    assert config_error(files).startswith("DEFAULT_CA_PATH /x does not exist")


def test_ca_path_not_pem(files: dict[str, str], tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    files["DEFAULT_CA_PATH"] = str(ca)
    env = load_environment(files)
    with pytest.raises(ConfigError, match=r"\ADEFAULT_CA_PATH .* is not a readable PEM CA bundle[^\n]*\Z"):
        env.ssl_context()


def test_ca_path_trusted() -> None:
    certifi_like = Path(ssl.get_default_verify_paths().cafile or "")
    if not certifi_like.is_file():
        pytest.skip("no system CA bundle to load")
    env = Environment(
        Path("t"), Path("a"), {}, "http://h/api", "http://h/stream-proxy/api", certifi_like, RuntimeSettings()
    )
    assert isinstance(env.ssl_context(), ssl.SSLContext)


# --------------------------------------------------------------------------------------------------- runtime


def test_runtime_defaults_and_overrides() -> None:
    rt = RuntimeSettings.load(
        {"CONNECTOR_READ_BATCH_SIZE": "1000", "CONNECTOR_READ_MODE": "earliest", "CONNECTOR_LOG_LEVEL": "warn"}
    )
    assert rt.read_batch_size == 1000 and rt.read_mode == "earliest" and rt.log_level == "WARNING"
    assert rt.publish_batch_size == 1000 and rt.subscriber_id is None and rt.retry_max_attempts is None


def test_runtime_ignores_os_environ_when_mapping_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTOR_READ_BATCH_SIZE", "7")
    assert RuntimeSettings.load({}).read_batch_size == 1000
    assert RuntimeSettings.load().read_batch_size == 7


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("READ_BATCH_SIZE", "5000"),
        ("READ_BATCH_SIZE", "0"),
        ("PUBLISH_BATCH_SIZE", "many"),
        ("READ_MODE", "sometimes"),
        ("LOG_FORMAT", "xml"),
        ("LOG_LEVEL", "LOUD"),
        ("HTTP_TIMEOUT_S", "-1"),
        ("RETRY_MAX_ATTEMPTS", "-1"),
        ("POLL_INTERVAL_MS", "0"),
    ],
)
def test_runtime_invalid_value(files: dict[str, str], name: str, value: str) -> None:
    files[f"CONNECTOR_{name}"] = value
    message = config_error(files)
    assert message.startswith(f"CONNECTOR_{name}={value!r} is invalid: ")


# --------------------------------------------------------------------------------------------------- sources


def test_source_credentials(files: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"api": {"token": "s3cret-one", "additionalSecretApiKey": "s3cret-two"}}))
    files["SOURCE_CREDENTIALS"] = str(path)
    creds = load_environment(files).source_credentials()
    assert creds.get("api", "token") == "s3cret-one"
    assert creds.get("api", "apiKey") == "s3cret-two"
    assert creds.sources() == ["api"]
    assert sorted(creds.values()) == ["s3cret-one", "s3cret-two"]
    assert "s3cret" not in repr(creds)
    with pytest.raises(ConfigError) as info:
        creds.get("api", "password")
    message = str(info.value)
    assert "\n" not in message and "s3cret" not in message
    assert "'api' has no secret 'password' or 'additionalSecretPassword'" in message
    assert "available secret names: additionalSecretApiKey, token" in message
    with pytest.raises(
        ConfigError, match=r"\Asource 'other' is not in SOURCE_CREDENTIALS .*available sources: api[^\n]*\Z"
    ):
        creds.get("other", "token")


def test_source_credentials_unset(files: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"\ASOURCE_CREDENTIALS is not set: [^\n]*\Z"):
        load_environment(files).source_credentials()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is not valid JSON (line 1)"),
        ('{"api": {"token": 5}}', "is malformed at 'api' 'token'"),
        ('["x"]', "is malformed at top level"),
    ],
)
def test_source_credentials_malformed(files: dict[str, str], tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "creds.json"
    path.write_text(content)
    files["SOURCE_CREDENTIALS"] = str(path)
    env = load_environment(files)
    with pytest.raises(ConfigError) as info:
        env.source_credentials()
    assert str(info.value).startswith("SOURCE_CREDENTIALS file") and expected in str(info.value)
    assert "\n" not in str(info.value)


def test_source_credentials_file_missing(files: dict[str, str], tmp_path: Path) -> None:
    files["SOURCE_CREDENTIALS"] = str(tmp_path / "none.json")
    with pytest.raises(ConfigError, match=r"\ASOURCE_CREDENTIALS .* does not exist[^\n]*\Z"):
        load_environment(files).source_credentials()


def test_source_configurations(files: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "configs.json"
    path.write_text(
        json.dumps(
            {
                "api": {
                    "secrets": {"additionalSecretKey": "k3y-value"},
                    "httpConnectionConfig": {
                        "url": "https://api.example.com",
                        "authHeaders": {"Authorization": "Bearer h3ader"},
                        "queryParameters": {"v": "2"},
                    },
                    "proxyToken": "pr0xy-token",
                    "somethingNew": {"x": 1},
                }
            }
        )
    )
    files["SOURCE_CONFIGURATIONS_PATH"] = str(path)
    configs = load_environment(files).source_configurations()
    api = configs["api"]
    assert isinstance(api, SourceConfiguration)
    assert api.secrets["additionalSecretKey"].get_secret_value() == "k3y-value"
    assert api.http_connection_config is not None
    assert api.http_connection_config.url == "https://api.example.com"
    assert api.http_connection_config.auth_headers["Authorization"].get_secret_value() == "Bearer h3ader"
    assert api.http_connection_config.query_parameters == {"v": "2"}
    assert api.model_extra == {"somethingNew": {"x": 1}}
    assert "k3y-value" not in repr(api) and "h3ader" not in repr(api) and "pr0xy" not in repr(api)


def test_source_configurations_malformed(files: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "configs.json"
    path.write_text(json.dumps({"api": {"httpConnectionConfig": {"authHeaders": {}}}}))
    files["SOURCE_CONFIGURATIONS_PATH"] = str(path)
    with pytest.raises(ConfigError) as info:
        load_environment(files).source_configurations()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"SOURCE_CONFIGURATIONS_PATH file {path}: source 'api' httpConnectionConfig.url")


def test_source_configurations_unset(files: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"\ASOURCE_CONFIGURATIONS_PATH is not set: [^\n]*\Z"):
        load_environment(files).source_configurations()


def test_source_credentials_direct() -> None:
    creds = SourceCredentials({"s": {"additionalSecretPassword": "pw-value"}})
    assert creds.get("s", "password") == "pw-value"
