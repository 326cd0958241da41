"""Look inside a running fake from the shell: resources, jobs, records, publish, provenance, offsets, tables.

Every command talks to the fake's HTTP API as the admin (`--url`, and `--admin-token` or `--state-dir` to read
DIR/admin-token; or FAKE_URL / FAKE_ADMIN_TOKEN). Streams and datasets are named by rid or by name. Output is a
table for people, `--json` for tools.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

_PREVIEW = {"preview": "true"}


class InspectError(Exception):
    """One line for the user: what failed and what to do."""


def add_commands(sub: Any) -> None:
    """Register the inspection subcommands on the fake's CLI."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("FAKE_URL", "http://127.0.0.1:8080"), help="the fake's URL")
    common.add_argument("--admin-token", default=os.environ.get("FAKE_ADMIN_TOKEN"), help="default: from --state-dir")
    common.add_argument("--state-dir", type=Path, default=None, help="read the admin token from DIR/admin-token")
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub.add_parser("resources", parents=[common], help="list streams, datasets and media sets").add_argument(
        "--type", choices=("stream", "dataset", "media_set"), default=None
    )
    sub.add_parser("jobs", parents=[common], help="list jobs with their inputs and outputs")
    records = sub.add_parser("records", parents=[common], help="records of a stream (the latest by default)")
    records.add_argument("stream", help="rid or name")
    records.add_argument("--partition", type=int, default=None, help="only this partition")
    records.add_argument("--from-offset", type=int, default=None, help="from this offset on (else the last --tail)")
    records.add_argument("--tail", type=int, default=10, help="how many of the latest records per partition")
    records.add_argument("--follow", action="store_true", help="keep printing new records until Ctrl-C")
    records.add_argument("--branch", default="master")
    publish = sub.add_parser("publish", parents=[common], help="publish JSON lines (a file or -) into a stream")
    publish.add_argument("stream", help="rid or name")
    publish.add_argument("file", help="JSON lines, one record per line; - for standard input")
    publish.add_argument("--branch", default="master")
    sub.add_parser("provenance", parents=[common], help="every read and write a job made").add_argument("job_rid")
    for name, text in (("offsets", "a subscriber's committed read position"), ("reset-offsets", "move it")):
        cmd = sub.add_parser(name, parents=[common], help=text)
        cmd.add_argument("stream", help="rid or name")
        cmd.add_argument("subscriber")
        cmd.add_argument("--branch", default="master")
        if name == "reset-offsets":
            cmd.add_argument("--to", choices=("earliest", "latest"), required=True)
    media = sub.add_parser("media", parents=[common], help="the latest media item at each path of a media set")
    media.add_argument("media_set", help="rid or name")
    media.add_argument("--branch", default="master")
    media.add_argument("--limit", type=int, default=100)
    table = sub.add_parser("table", parents=[common], help="the first rows of a dataset, as CSV")
    table.add_argument("dataset", help="rid or name")
    table.add_argument("--head", type=int, default=20)
    table.add_argument("--branch", default="master")


COMMANDS = ("resources", "jobs", "records", "publish", "provenance", "offsets", "reset-offsets", "table", "media")


def _token(args: argparse.Namespace) -> str:
    if args.admin_token:
        return str(args.admin_token)
    if args.state_dir is not None:
        path = args.state_dir / "admin-token"
        try:
            return str(path.read_text()).strip()
        except OSError as exc:
            raise InspectError(f"cannot read {path} ({exc.strerror}): is --state-dir the fake's?") from exc
    raise InspectError("give --admin-token, --state-dir (the fake's) or FAKE_ADMIN_TOKEN")


class Client:
    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.session, self.url, self.headers = session, url.rstrip("/"), {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            async with self.session.request(method, self.url + path, headers=self.headers, **kwargs) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    try:
                        detail = json.loads(body).get("errorName") or body.decode()[:200]
                    except (ValueError, AttributeError):
                        detail = body.decode(errors="replace")[:200]
                    raise InspectError(f"{method} {path} -> {resp.status} {detail}")
                return json.loads(body) if resp.content_type == "application/json" else body
        except aiohttp.ClientError as exc:
            raise InspectError(f"cannot reach the fake at {self.url} ({type(exc).__name__}): is it running?") from exc

    async def rid(self, name_or_rid: str, type_: str) -> str:
        if name_or_rid.startswith("ri."):
            return name_or_rid
        found = [r for r in (await self.call("GET", "/_fake/resources", params={"type": type_}))["data"]
                 if r["name"] == name_or_rid]  # fmt: skip
        if not found:
            raise InspectError(f"no {type_} named {name_or_rid!r}: see `fake-stream-proxy resources`")
        return str(found[0]["rid"])


def _stream(rid: str, branch: str, suffix: str) -> str:
    return f"/api/v2/highScale/streams/datasets/{quote(rid, safe='')}/streams/{quote(branch, safe='')}{suffix}"


def _print_table(rows: Iterable[dict[str, Any]], columns: list[str]) -> None:
    rows = list(rows)
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _emit(args: argparse.Namespace, value: Any, rows: list[dict[str, Any]] | None, columns: list[str]) -> None:
    if args.json or rows is None:
        print(json.dumps(value, indent=2))
    else:
        _print_table(rows, columns)


async def _records(client: Client, args: argparse.Namespace) -> None:
    rid = await client.rid(args.stream, "stream")
    ends = await client.call("GET", _stream(rid, args.branch, "/getEndOffsets"), params=_PREVIEW)
    partitions = [args.partition] if args.partition is not None else sorted(int(p) for p in ends)
    next_offset = {p: args.from_offset if args.from_offset is not None else max(0, int(ends[str(p)]) - args.tail)
                   for p in partitions}  # fmt: skip
    while True:
        for p in partitions:
            page = await client.call(
                "GET",
                _stream(rid, args.branch, "/getRecords"),
                params={"partitionId": p, "startOffset": next_offset[p], "limit": 1000, **_PREVIEW},
            )
            for record in page:
                next_offset[p] = int(record["offset"]) + 1
                line = {"partition": p, "offset": record["offset"], "value": record["value"]}
                print(json.dumps(line) if args.json else f"{p}:{record['offset']}  {json.dumps(record['value'])}")
        if not args.follow:
            return
        sys.stdout.flush()
        await asyncio.sleep(0.5)


def _read_records(source: str) -> list[Any]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise InspectError(f"cannot read {source} ({exc.strerror})") from exc
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InspectError(f"{source}:{number}: not a JSON record ({exc.msg})") from None
    return records


async def _publish(client: Client, args: argparse.Namespace, records: list[Any]) -> None:
    rid = await client.rid(args.stream, "stream")
    for start in range(0, len(records), 1000):
        body = {"records": records[start : start + 1000]}
        await client.call("POST", _stream(rid, args.branch, "/publishRecords"), json=body)
    print(f"published {len(records)} records to {args.stream}")


async def run(args: argparse.Namespace) -> None:
    """Run one inspection command; raises InspectError with the line to show."""
    async with aiohttp.ClientSession() as session:
        client = Client(session, args.url, _token(args))
        command = args.command
        if command == "resources":
            found = await client.call("GET", "/_fake/resources", params={"type": args.type} if args.type else {})
            _emit(args, found, found["data"], ["type", "name", "rid", "createdTime"])
        elif command == "jobs":
            found = await client.call("GET", "/_fake/jobs")
            rows = [{"jobRid": j["jobRid"], "inputs": ", ".join(j["inputs"]), "outputs": ", ".join(j["outputs"])}
                    for j in found["data"]]  # fmt: skip
            _emit(args, found, rows, ["jobRid", "inputs", "outputs"])
        elif command == "records":
            await _records(client, args)
        elif command == "publish":
            await _publish(client, args, _read_records(args.file))
        elif command == "provenance":
            found = await client.call("GET", "/_fake/provenance", params={"jobRid": args.job_rid})
            _emit(args, found, found["events"], ["time", "operation", "direction", "rid", "recordCount"])
        elif command in ("offsets", "reset-offsets"):
            rid = await client.rid(args.stream, "stream")
            path = _stream(rid, args.branch, f"/subscribers/{quote(args.subscriber, safe='')}")
            if command == "offsets":
                found = await client.call("GET", path + "/getReadPosition", params=_PREVIEW)
            else:
                body = {"position": {"type": args.to}}
                found = await client.call("POST", path + "/resetOffsets", params=_PREVIEW, json=body)
            _emit(args, found, [{"partition": p, "offset": o} for p, o in found.items()], ["partition", "offset"])
        elif command == "media":
            rid = await client.rid(args.media_set, "media_set")
            params = {"branch": args.branch, "limit": str(args.limit)}
            found = await client.call("GET", f"/_fake/media-sets/{quote(rid, safe='')}/items", params=params)
            _emit(args, found, found["data"], ["path", "mimeType", "sizeBytes", "rid"])
        elif command == "table":
            rid = await client.rid(args.dataset, "dataset")
            params = {"format": "CSV", "branchName": args.branch, **_PREVIEW}
            csv = await client.call("GET", f"/api/v2/datasets/{quote(rid, safe='')}/readTable", params=params)
            text = csv.decode() if isinstance(csv, bytes) else json.dumps(csv)
            print("\n".join(text.splitlines()[: args.head + 1]))
