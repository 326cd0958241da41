"""`fake-stream-proxy serve`: run the local Foundry until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from .app import FakeServer
from .context import DEFAULT_MAX_BODY_BYTES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fake-stream-proxy",
        description="A local Foundry speaking the stream-proxy, datasets and media sets wire format, "
        "with scoped job tokens and provenance, durable in SQLite under --state-dir.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve until interrupted; prints its base URL when ready")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one (default 8080)")
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
    return parser


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeServer(
        args.state_dir,
        host=args.host,
        port=args.port,
        admin_token=args.admin_token,
        max_body_bytes=args.max_body_bytes,
    )
    await fake.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake-stream-proxy listening on {fake.url}", flush=True)
    # A local test fake's admin token, not a Foundry secret: shown so the admin API can be used at once.
    print(f"admin token: {fake.admin_token} (also in {args.state_dir / 'admin-token'})", flush=True)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(args))
    except OSError as exc:
        print(f"fake-stream-proxy: cannot serve on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0
