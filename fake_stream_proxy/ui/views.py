"""The page's HTML, rendered on the server from the store's dicts; the script only swaps sections in.

Rendering in one place means escaping in one place: every value from state (names, record values, paths)
goes through `escape`, and the page's Content-Security-Policy forbids inline script as a second guard.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape
from typing import Any

from .lineage import job_label, lineage_svg
from .links import resource_link

STATIC = "/_fake/ui/static"
MAX_VALUE_CHARS = 400  # a record's JSON is cut here on the page (the JSON endpoint has it whole)
Renderer = Callable[[], str]


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _table(css: str, headers: list[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _link(text: str, href: str | None) -> str:
    return f'<a href="{_e(href)}">{_e(text)}</a>' if href else _e(text)


def _aliases(refs: dict[str, dict[str, str]], names: dict[str, str]) -> str:
    return ", ".join(f"{_e(alias)} → {_e(names.get(ref['rid'], ref['rid']))}" for alias, ref in refs.items()) or "-"


def _json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return _e(text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…")


def _num(value: Any, css: str = "") -> str:
    return f'<td class="num {css}">{_e(value)}</td>'


def _row(data: dict[str, Any], *cells: str) -> str:
    """A row with `data` as data-* attributes (what tests and people select by); each cell is escaped HTML,
    wrapped in <td> unless it is one already (`_num`)."""
    attrs = "".join(f' data-{name}="{_e(value)}"' for name, value in data.items())
    return f"<tr{attrs}>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>"


def _code(value: Any) -> str:
    return f"<code>{_e(value)}</code>"


# Sections of the overview: id -> renderer. The live endpoint sends the same ids.


def lineage_section(overview: dict[str, Any]) -> str:
    rows = [
        _row(
            {"job": e["jobRid"], "direction": e["direction"], "alias": e["alias"]},
            _e(job_label(e["jobRid"])),
            _e(e["direction"]),
            _e(e["alias"]),
            _link(e["name"], resource_link(e["type"], e["rid"])),
            _num(e["records"], "records"),
            _num(e["calls"], "calls"),
            _e(e["lastTime"] or "-"),
        )
        for e in overview["edges"]
    ]
    table = _table(
        "edges",
        ["job", "direction", "alias", "resource", "records", "calls", "last activity"],
        rows,
        "No jobs yet: declare one with POST /_fake/jobs or a stack file.",
    )
    return f'<h2>Lineage</h2><div class="graph">{lineage_svg(overview["edges"])}</div>{table}'


def resources_section(overview: dict[str, Any]) -> str:
    rows = [
        _row(
            {"rid": r["rid"]},
            _link(r["name"], resource_link(r["type"], r["rid"])),
            _e(r["type"]),
            _code(r["rid"]),
            _e(r["createdTime"]),
        )
        for r in overview["resources"]
    ]
    return "<h2>Resources</h2>" + _table("resources", ["name", "type", "rid", "created"], rows, "No resources yet.")


def jobs_section(overview: dict[str, Any]) -> str:
    names = {r["rid"]: r["name"] for r in overview["resources"]}
    rows = [
        _row(
            {"job": j["jobRid"]},
            _e(job_label(j["jobRid"])),
            _code(j["jobRid"]),
            _aliases(j["inputs"], names),
            _aliases(j["outputs"], names),
            _e(j["createdTime"]),
        )
        for j in overview["jobs"]
    ]
    return "<h2>Jobs</h2>" + _table("jobs", ["job", "rid", "inputs", "outputs", "created"], rows, "No jobs yet.")


def runtimes_section(overview: dict[str, Any]) -> str:
    rows = [
        _row(
            {"runtime": r["runtimeId"]},
            _code(r["runtimeId"]),
            "yes" if r["connected"] else "no",
            _e(r["lastPollAt"] or "-"),
            _e(", ".join(r["deployedApps"]) or "-"),
            _e(", ".join(f"{n} {status}" for status, n in sorted(r["jobs"].items())) or "-"),
        )
        for r in overview["runtimes"]
    ]
    return "<h2>Function-mode runtimes</h2>" + _table(
        "runtimes", ["runtime", "connected", "last poll", "deployed apps", "jobs"], rows, "No runtimes."
    )


def streams_section(overview: dict[str, Any]) -> str:
    rows = [
        _row(
            {"rid": s["rid"]},
            _link(s["name"], resource_link("stream", s["rid"], s["branch"])),
            _e(s["branch"]),
            _num(s["partitions"]),
            _num(s["totalRecords"], "total"),
            _num(s["subscribers"]),
            _num(s["maxLag"], "lag"),
        )
        for s in overview["streams"]
    ]
    return "<h2>Streams</h2>" + _table(
        "streams", ["stream", "branch", "partitions", "records", "subscribers", "max lag"], rows, "No streams yet."
    )


OVERVIEW_SECTIONS: dict[str, Callable[[dict[str, Any]], str]] = {
    "lineage": lineage_section,
    "streams": streams_section,
    "resources": resources_section,
    "jobs": jobs_section,
    "runtimes": runtimes_section,
}


def stream_detail(stream: dict[str, Any]) -> str:
    """The stream browser: end offsets and latest records per partition, subscribers with positions and lag."""
    partitions = "".join(_partition(p) for p in stream["partitionDetails"])
    subscribers = [
        f'<tr data-subscriber="{_e(s["subscriberId"])}"><td><code>{_e(s["subscriberId"])}</code></td>'
        f"<td>{_e(job_label(s['jobRid']) if s['jobRid'] else '-')}</td><td>{_e(_offsets(s['positions']))}</td>"
        f'<td class="num lag">{s["lag"]}</td></tr>'
        for s in stream["subscriberDetails"]
    ]
    return (
        f'<h2>Stream <span class="name">{_e(stream["name"])}</span> <small>{_e(stream["branch"])}</small></h2>'
        f"<p><code>{_e(stream['rid'])}</code> · view <code>{_e(stream['viewRid'])}</code> · {_e(stream['streamType'])}"
        f' · <span class="total">{stream["totalRecords"]}</span> records · end offsets'
        f' <span class="ends">{_e(_offsets(stream["endOffsets"]))}</span></p>'
        f"<h3>Latest records</h3>{partitions}<h3>Subscribers</h3>"
        + _table("subscribers", ["subscriber", "job", "next offsets", "lag"], subscribers, "No subscribers.")
    )


def _partition(p: dict[str, Any]) -> str:
    """One partition's end offset and latest records, newest first."""
    records = [
        f'<tr><td class="num">{r["offset"]}</td><td><code>{_json(r["value"])}</code></td></tr>'
        for r in reversed(p["latest"])
    ]
    return (
        f'<div class="partition" data-partition="{p["partition"]}"><h4>partition {p["partition"]}'
        f' <span class="end">end offset {p["endOffset"]}</span></h4>'
        + _table("records", ["offset", "value"], records, "no records")
        + "</div>"
    )


def _offsets(offsets: dict[str, int]) -> str:
    return " ".join(f"{p}:{o}" for p, o in offsets.items()) or "-"


def dataset_detail(dataset: dict[str, Any]) -> str:
    """Transactions, the branch's files and its table's first rows."""
    txns = [
        f"<tr><td><code>{_e(t['rid'])}</code></td><td>{_e(t['transactionType'])}</td><td>{_e(t['status'])}</td>"
        f"<td>{_e(t['branch'])}</td><td>{_e(t['createdTime'])}</td><td>{_e(t.get('closedTime') or '-')}</td></tr>"
        for t in dataset["transactions"]
    ]
    files = [
        f'<tr><td><code>{_e(f["path"])}</code></td><td class="num">{_e(f["sizeBytes"])}</td></tr>'
        for f in dataset["files"]
    ]
    table = dataset["table"]
    rows = [
        "<tr>" + "".join(f"<td>{_json(row.get(c))}</td>" for c in table["columns"]) + "</tr>" for row in table["rows"]
    ]
    more = dataset["fileCount"] - len(dataset["files"])
    return (
        f'<h2>Dataset <span class="name">{_e(dataset["name"])}</span> <small>{_e(dataset["branch"])}</small></h2>'
        f"<p><code>{_e(dataset['rid'])}</code> · branches {_e(', '.join(dataset['branches']))}</p>"
        "<h3>Transactions</h3>"
        + _table("transactions", ["rid", "type", "status", "branch", "created", "closed"], txns, "No transactions.")
        + f"<h3>Files ({dataset['fileCount']})</h3>"
        + _table("files", ["path", "bytes"], files, "No files in this view.")
        + (f'<p class="empty">and {more} more</p>' if more > 0 else "")
        + "<h3>First rows</h3>"
        + _table("rows", table["columns"], rows, table["note"] or "The table has no rows.")
    )


def not_found(error_name: str) -> str:
    """A stream or dataset the address names but the fake does not hold (or no longer: a reset, a typo)."""
    return f'<h2>Not found</h2><p class="error">{_e(error_name)}: pick one from the tables on this page.</p>'


def page(sections: dict[str, str]) -> str:
    """The whole page for a logged-in person: each section's id is what the live endpoint refreshes."""
    body = "".join(f'<section id="{_e(name)}">{html}</section>' for name, html in sections.items())
    return _shell(
        "Fake Foundry",
        '<header><h1><a href="/">Fake Foundry</a></h1><span id="live" class="live">loaded</span>'
        '<form method="post" action="/_fake/ui/logout"><button type="submit">Log out</button></form></header>'
        f"<main>{body}</main>",
        script=True,
    )


def login_page(message: str | None = None) -> str:
    """All that anyone without a session sees: no state, only the form."""
    note = f'<p class="error" role="alert">{_e(message)}</p>' if message else ""
    return _shell(
        "Fake Foundry: log in",
        '<main class="login"><h1>Fake Foundry</h1>'
        "<p>This page shows what the local fake holds. Log in with its admin token (printed when it starts,"
        " and in <code>STATE_DIR/admin-token</code>).</p>"
        f'{note}<form method="post" action="/_fake/ui/login" id="login">'
        '<label for="token">Admin token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>'
        '<button type="submit">Log in</button></form></main>',
        script=False,
    )


def _shell(title: str, body: str, *, script: bool) -> str:
    js = f'<script src="{STATIC}/app.js" defer></script>' if script else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{_e(title)}</title><link rel="stylesheet" href="{STATIC}/app.css">{js}</head>'
        f"<body>{body}</body></html>"
    )
