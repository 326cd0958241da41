"""`fake-stream-proxy serve`: run the local Foundry until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from . import inspect
from .app import FakeServer
from .context import DEFAULT_MAX_BODY_BYTES, FakeOptions
from .stack import StackError
from .storage import private_dir

_DEFAULTS = FakeOptions()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fake-stream-proxy",
        description="A local Foundry speaking the stream-proxy, datasets, media sets, compute-module runtime and "
        "Contour job wire formats, with scoped job tokens and provenance, durable in SQLite under --state-dir.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve until interrupted; prints its base URL when ready")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one (default 8080)")
    serve.add_argument(
        "--https-port",
        type=int,
        default=8443,
        help="https port for function-mode modules, with a local CA in DIR/tls (default 8443; 0 picks one)",
    )
    serve.add_argument("--no-https", action="store_true", help="serve plain http only")
    serve.add_argument("--state-dir", type=Path, required=True, help="folder for the SQLite file and blobs")
    serve.add_argument(
        "--admin-token", default=None, help="token for /_fake/* (default: generated, saved to DIR/admin-token)"
    )
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help=f"JSON request bodies over this get 413 (default {DEFAULT_MAX_BODY_BYTES}; uploads stream to disk)",
    )
    serve.add_argument(
        "--seed-config",
        type=Path,
        default=None,
        help="YAML declaring compute-module runtimes and deployed apps (foundry: compute_modules: ...), "
        "created before the URL is printed",
    )
    serve.add_argument(
        "--stack",
        type=Path,
        default=None,
        help="YAML declaring streams, datasets, media sets, jobs and runtimes; created before the URL is printed "
        "(idempotent), with each job's token, alias map and env file under DIR/jobs/<name>/",
    )
    serve.add_argument(
        "--poll-hold-s",
        type=float,
        default=_DEFAULTS.poll_hold_s,
        help=f"how long an empty job poll is held open (default {_DEFAULTS.poll_hold_s:g})",
    )
    serve.add_argument(
        "--sync-timeout-s",
        type=float,
        default=_DEFAULTS.sync_timeout_s,
        help=f"how long Contour's execute waits for a result (default {_DEFAULTS.sync_timeout_s:g})",
    )
    serve.add_argument(
        "--read-timeout-s",
        type=float,
        default=_DEFAULTS.read_timeout_s,
        help="how long request headers or a body may stall before the fake answers 408 or closes "
        f"(default {_DEFAULTS.read_timeout_s:g})",
    )
    serve.add_argument(
        "--log-format",
        choices=("plain", "json", "console", "sls"),
        default="plain",
        help="plain text on stderr (default), or structured lines on stdout: json, console, or sls (service.1)",
    )
    inspect.add_commands(sub)
    return parser


class UsageError(Exception):
    """A problem with the command line or its files: one line, exit 2."""


def _load_seed(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        seed = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"--seed-config {path}: cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"--seed-config {path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(seed, dict):
        raise UsageError(f"--seed-config {path}: must be a mapping with a `foundry:` key")
    return seed


def _check_state_dir(path: Path) -> None:
    """Blame the state dir, not the address, when it cannot hold the fake's files."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"--state-dir {path} is not a directory: give a folder for the fake's state")
    try:
        private_dir(path)
    except OSError as exc:
        raise UsageError(f"--state-dir {path} cannot be created ({exc.strerror})") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--state-dir {path} is not writable: give a folder the fake may write to")


_structured = False


def _event(event: str, **fields: Any) -> None:
    """A structured line (json, console or SLS) about the fake itself; nothing in the default plain mode."""
    if _structured:
        from framework._logging import get_logger

        get_logger("fake_stream_proxy").info(event, **fields)


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeServer(
        args.state_dir,
        host=args.host,
        port=args.port,
        admin_token=args.admin_token,
        max_body_bytes=args.max_body_bytes,
        https_port=None if args.no_https else args.https_port,
        poll_hold_s=args.poll_hold_s,
        sync_timeout_s=args.sync_timeout_s,
        read_timeout_s=args.read_timeout_s,
        seed=_load_seed(args.seed_config),
        stack=args.stack,
    )
    try:
        await fake.start()
    except OSError as exc:
        https = "" if args.no_https else f" (https on port {args.https_port})"
        raise UsageError(f"cannot serve on {args.host}:{args.port}{https}: {exc.strerror or exc}") from exc
    except StackError as exc:
        raise UsageError(f"--stack {exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--seed-config {args.seed_config}: {exc}") from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake-stream-proxy listening on {fake.url}", flush=True)
    # A local test fake's admin token, not a Foundry secret: shown so the admin API can be used at once.
    print(f"admin token: {fake.admin_token} (also in {args.state_dir / 'admin-token'})", flush=True)
    if fake.https_url is not None:
        print(f"compute-module runtime (https) on {fake.https_url}; CA: {fake.ca_path}", flush=True)
    for name, folder in fake.job_folders.items():
        print(f"job {name}: env file {folder / 'env'}", flush=True)
    page = f"{fake.url}/"
    if not _structured:  # structured stdout is all records: there the page is a field of "fake serving"
        print(f"web page: {page} (log in with the admin token)", flush=True)
    _event("fake serving", url=fake.url, https_url=fake.https_url, state_dir=str(args.state_dir), web_page=page)
    try:
        await stop.wait()
    finally:
        await fake.stop()
        _event("fake stopped")


def _configure_logs(args: argparse.Namespace) -> None:
    if args.log_format == "plain":
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        from framework._logging import configure_logging  # the framework's renderers, loaded only when asked

        global _structured
        _structured = True
        configure_logging(args.log_format, "INFO")
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """`serve`, or one of the inspection commands; a user error is one line on stderr and exit 2."""
    args = _parser().parse_args(argv)
    try:
        if args.command in inspect.COMMANDS:
            asyncio.run(inspect.run(args))
        else:
            _configure_logs(args)
            _check_state_dir(args.state_dir)
            asyncio.run(_serve(args))
    except (UsageError, inspect.InspectError) as exc:
        where = "" if args.command == "serve" else f" {args.command}"
        print(f"fake-stream-proxy{where}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
