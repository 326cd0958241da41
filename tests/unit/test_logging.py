"""Logging: JSON lines parse back, secrets never appear, console mode works, stdlib loggers share the output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

import framework
import framework._logging as flog
from framework._logging import configure_logging, get_logger, register_secret

from ..sls_rules import assert_service_1


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    if flog._handler is not None:
        root.removeHandler(flog._handler)
        flog._handler = None
    root.setLevel(level)
    structlog.reset_defaults()


def json_lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_parse_back() -> None:
    out = io.StringIO()
    configure_logging("json", "INFO", stream=out)
    get_logger("framework.test", connector="demo").info("started", inputs=2)
    (line,) = json_lines(out)
    assert line["event"] == "started" and line["level"] == "info" and line["logger"] == "framework.test"
    assert line["connector"] == "demo" and line["inputs"] == 2
    assert line["timestamp"].endswith("Z") and "T" in line["timestamp"]


def test_auto_is_json_when_not_a_tty_and_console_on_a_tty() -> None:
    out = io.StringIO()
    configure_logging("auto", stream=out)
    get_logger("t").info("hello")
    assert json_lines(out)[0]["event"] == "hello"
    tty = _Tty()
    configure_logging("auto", stream=tty)
    get_logger("t").info("hello")
    assert not tty.getvalue().startswith("{") and "hello" in tty.getvalue()


def test_level_filters_structlog_and_stdlib() -> None:
    out = io.StringIO()
    configure_logging("json", "warning", stream=out)
    get_logger("t").info("hidden")
    logging.getLogger("aiohttp.client").info("hidden too")
    get_logger("t").warning("shown")
    assert [line["event"] for line in json_lines(out)] == ["shown"]


def test_idempotent_one_line_per_event() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", stream=first)
    configure_logging("json", stream=second)
    get_logger("t").info("once")
    logging.getLogger("aiohttp.access").warning("std once")
    assert first.getvalue() == ""
    assert [line["event"] for line in json_lines(second)] == ["once", "std once"]


def test_stdlib_logging_goes_through_renderer_and_redaction() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    register_secret("stdlib-secret-42")
    logging.getLogger("aiohttp.client").warning("sent %s", "stdlib-secret-42")
    (line,) = json_lines(out)
    assert line == {**line, "event": "sent [REDACTED]", "level": "warning", "logger": "aiohttp.client"}


def test_registered_secrets_redacted_everywhere() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    register_secret("hunter2-secret")
    register_secret("hunter2-secret-longer")
    log = get_logger("t")
    log.info(
        "calling with hunter2-secret",
        detail={"nested": ["x hunter2-secret-longer y"], "n": 1},
        error=ValueError("bad hunter2-secret"),
    )
    try:
        raise RuntimeError("token was hunter2-secret")
    except RuntimeError:
        log.exception("failed")
    text = out.getvalue()
    assert "hunter2" not in text
    first, second = json_lines(out)
    assert first["event"] == "calling with [REDACTED]"
    assert first["detail"] == {"nested": ["x [REDACTED] y"], "n": 1}
    assert first["error"] == "ValueError: bad [REDACTED]"
    assert "RuntimeError: token was [REDACTED]" in second["exception"]


def test_short_values_not_registered() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    register_secret("abc")
    register_secret("   ")
    get_logger("t").info("abc is fine")
    assert json_lines(out)[0]["event"] == "abc is fine"


@pytest.mark.parametrize(
    "key", ["token", "Authorization", "password", "api_key", "apiKey", "client_secret", "credentials", "proxyToken"]
)
def test_key_based_redaction(key: str) -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    get_logger("t").info("request", **{key: "plain-value"}, headers={key: "plain-value", "Accept": "x"})
    (line,) = json_lines(out)
    assert line[key] == "[REDACTED]" and line["headers"] == {key: "[REDACTED]", "Accept": "x"}


def test_key_redaction_spares_paths_and_names() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    get_logger("t").info("config", token_path="/run/token", secret_names=["a", "b"], error_name="X")
    (line,) = json_lines(out)
    assert line["token_path"] == "/run/token" and line["secret_names"] == ["a", "b"] and line["error_name"] == "X"


def test_console_mode_renders_and_redacts() -> None:
    out = io.StringIO()
    configure_logging("console", "DEBUG", stream=out)
    register_secret("console-secret-9")
    log = get_logger("t", connector="demo")
    log.debug("debugging", password="pw", value="console-secret-9")
    try:
        raise KeyError("console-secret-9")
    except KeyError:
        log.exception("boom")
    try:
        raise ValueError("console-secret-9 again")
    except ValueError as exc:
        caught = exc
    log.error("passed exception", exc_info=caught)
    logging.getLogger("aiohttp").info("stdlib line")
    text = out.getvalue()
    assert "debugging" in text and "boom" in text and "stdlib line" in text and "connector=demo" in text
    assert "console-secret-9" not in text and "pw" not in text.replace("password", "")
    assert text.count("Traceback") == 2 and "ValueError: [REDACTED] again" in text


def test_invalid_level_rejected() -> None:
    with pytest.raises(ValueError, match="log level 'LOUD'"):
        configure_logging("json", "LOUD", stream=io.StringIO())


def test_default_stream_follows_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    get_logger("t").info("to stdout")
    assert json.loads(capsys.readouterr().out.strip())["event"] == "to stdout"


# --- SLS service.1 -------------------------------------------------------------------------------------------


def test_sls_shape_and_safe_split() -> None:
    out = io.StringIO()
    configure_logging("sls", "DEBUG", stream=out)
    log = get_logger("framework.test", connector="demo")
    log.info("invalid record", source="numbers", partition=2, offset=17, error="x is not an int: 'abc'", wait_s=0.5)
    log.debug("fetched", count=3, url="http://host/x")
    log.warning("slow")
    (info, debug, warning) = json_lines(out)
    for line in (info, debug, warning):
        assert_service_1(line)
    assert info["level"] == "INFO" and info["message"] == "invalid record" and info["origin"] == "framework.test"
    assert info["params"] == {"source": "numbers", "partition": 2, "offset": 17, "wait_s": 0.5}
    assert info["unsafeParams"] == {"error": "x is not an int: 'abc'"}
    assert info["tags"] == {"connector": "demo"}
    assert (
        debug["level"] == "DEBUG"
        and debug["params"] == {"count": 3}
        and debug["unsafeParams"] == {"url": "http://host/x"}
    )
    assert warning["level"] == "WARN"


def test_sls_levels_stacktrace_and_stdlib() -> None:
    out = io.StringIO()
    configure_logging("sls", "INFO", stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("t").exception("failed", count=1)
    get_logger("t").critical("dying")
    logging.getLogger("aiohttp.client").error("stdlib %s", "error")
    failed, dying, stdlib = json_lines(out)
    for line in (failed, dying, stdlib):
        assert_service_1(line)
    assert failed["level"] == "ERROR" and "RuntimeError: boom" in failed["stacktrace"]
    assert "exception" not in failed["params"] and "exception" not in failed["unsafeParams"]
    assert dying["level"] == "FATAL"
    assert stdlib["level"] == "ERROR" and stdlib["message"] == "stdlib error" and stdlib["origin"] == "aiohttp.client"


def test_sls_marking_safe_and_redaction_in_every_field() -> None:
    out = io.StringIO()
    configure_logging("sls", stream=out)
    register_secret("sls-secret-token-77")
    framework.mark_safe("my_counter")
    try:
        raise ValueError("token sls-secret-token-77 rejected")
    except ValueError:
        get_logger("t", connector="sls-secret-token-77").exception(
            "calling sls-secret-token-77",
            my_counter=5,
            source=framework.safe("s3 sls-secret-token-77"),
            url="https://bob:hunter2pw@example.test/x?api_key=k3y-value&page=2",
            password="pw-123456",
        )
    text = out.getvalue()
    assert "sls-secret-token-77" not in text and "hunter2pw" not in text and "k3y-value" not in text
    assert "pw-123456" not in text
    (line,) = json_lines(out)
    assert_service_1(line)
    assert line["params"]["my_counter"] == 5 and line["params"]["source"] == "s3 [REDACTED]"
    assert line["unsafeParams"]["url"] == "https://bob:[REDACTED]@example.test/x?api_key=[REDACTED]&page=2"


def test_safe_values_render_plainly_outside_sls() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    get_logger("t").info("fetched", source=framework.safe("s3"))
    assert json_lines(out)[0]["source"] == "s3"


def test_url_passwords_redacted_without_registering() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    get_logger("t").info("source", url="http://user:PASSWORD-1@host:8/x?token=abc123&n=1")
    assert json_lines(out)[0]["url"] == "http://user:[REDACTED]@host:8/x?token=[REDACTED]&n=1"


def test_invalid_format_rejected() -> None:
    with pytest.raises(ValueError, match="log format 'xml' is not one of auto, json, console, sls"):
        configure_logging("xml", stream=io.StringIO())  # type: ignore[arg-type]
