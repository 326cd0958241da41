"""Every CONNECTOR_* variable in one table generated from `RuntimeSettings`, and a warning for unknown ones.

The README holds the table between `<!-- settings:start -->` and `<!-- settings:end -->`; a test compares them,
and `python -m framework._env.settings_doc README.md` rewrites it. A field's text is its `Field(description=)`,
else `DESCRIPTIONS` here; a field with neither fails that test, so a new setting cannot go undocumented.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .settings import RuntimeSettings

PREFIX = "CONNECTOR_"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"

DESCRIPTIONS = {
    "publish_batch_size": "records per publishRecords request of a stream output",
    "publish_linger_ms": "how long a stream output waits for a fuller batch after its first buffered record "
    "(not waited once a read comes back empty)",
    "read_batch_size": "records per read of a stream input (one batch for transform_batch)",
    "max_in_flight_batches": "input batches read and transformed while earlier ones are still publishing",
    "read_mode": "where an input starts: its subscriber's committed position, or the stream's earliest / latest",
    "subscriber_id": "the stream subscriber id (default `<connector>-<alias>-<hash of rid and branch>`)",
    "poll_interval_ms": "the longest pause between reads while an input has no new records (after records the "
    "next read is at once; after an empty one the wait starts at 2 ms and doubles)",
    "log_format": "`json` or `sls` (what Foundry ingests), `console`, or `auto` (console on a terminal)",
    "log_level": "DEBUG, INFO, WARNING (or WARN), ERROR",
    "progress_interval_s": "seconds between `progress` log lines (records in and out, rates, lag)",
    "shutdown_timeout_s": "after SIGTERM: how long flushing and committing may take before exit 1",
    "http_timeout_s": "timeout of one HTTP request to Foundry",
    "retry_max_attempts": "attempts per request on 429, 5xx and connection errors; unset: unlimited for `run`, "
    "3 for `check`; 0 also means unlimited",
    "retry_initial_backoff_s": "the first retry's backoff (doubled each attempt, with jitter)",
    "retry_max_backoff_s": "the longest backoff between two retries",
    "on_transform_error": "a transform's exception: `stop` the connector, or `dead_letter` the input record",
    "http_port": "serve /live, /ready and Prometheus /metrics on this port (1024-65535)",
    "outage_report_s": "while Foundry is unreachable: seconds between `still unavailable` lines",
    "workers": "worker processes that split each stream input's partitions (p % N) through the same "
    "subscriber; SIGTERM reaches all, the exit code is the worst; with CONNECTOR_HTTP_PORT=P worker i serves P+i",
    "worker_index": "set by `connector run` for each worker it starts; not for users",
}
#: CONNECTOR_* variables read outside `RuntimeSettings`: (name, default, text).
OTHER = [
    ("CONNECTOR_MAX_RESULT_BYTES", "67108864", "function mode: the largest result a function may return"),
    ("CONNECTOR_SPEC", "", "not read by `connector run`: the stack file's env file names the class to run with it"),
]


def _text(name: str, field: FieldInfo) -> str:
    text = field.description or DESCRIPTIONS.get(name)
    if not text:
        raise KeyError(f"{PREFIX}{name.upper()} has no description: give its field one (Field(description=...))")
    return text


def _default(field: FieldInfo) -> str:
    value: Any = field.default
    return "" if value is PydanticUndefined or value is None else str(value)


def _allowed(field: FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                parts.append(f"{sign} {getattr(meta, attr)}")
    args = getattr(field.annotation, "__args__", ())
    if args and all(isinstance(a, str) for a in args):
        parts.append(" \\| ".join(args))
    return ", ".join(parts)


def settings_table() -> str:
    """The Markdown table of every CONNECTOR_* variable: name, default, allowed values, what it does."""
    rows = ["| variable | default | allowed | what it does |", "|---|---|---|---|"]
    for name, field in RuntimeSettings.model_fields.items():
        default, allowed = _default(field), _allowed(field)
        rows.append(f"| `{PREFIX}{name.upper()}` | {default and f'`{default}`'} | {allowed} | {_text(name, field)} |")
    rows += [f"| `{name}` | {default and f'`{default}`'} |  | {text} |" for name, default, text in OTHER]
    return "\n".join(rows)


def known_variables() -> set[str]:
    return {f"{PREFIX}{name.upper()}" for name in RuntimeSettings.model_fields} | {name for name, _, _ in OTHER}


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One warning text per CONNECTOR_* variable no setting reads, naming the closest valid one."""
    known = sorted(known_variables())
    found = []
    for name in sorted(k for k in environ if k.upper().startswith(PREFIX) and k.upper() not in known):
        close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; the README's settings table lists every one"
        found.append(f"{name} is not a connector setting and is ignored{hint}")
    return found


def replace_table(text: str) -> str:
    """`text` (the README) with the table between the markers regenerated."""
    head, start, rest = text.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"the README has no {START} ... {END} markers")
    return f"{head}{START}\n{settings_table()}\n{END}{tail}"


if __name__ == "__main__":
    readme = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    readme.write_text(replace_table(readme.read_text()))
