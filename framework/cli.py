"""`connector`: the container entrypoint (`connector run package.module:ClassName`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ._connector import Connector
from ._runtime import main_run

_EPILOG = """\
environment (set by Foundry in pipeline mode; set them yourself to run against the fake):
  BUILD2_TOKEN                   path to the job token file
  RESOURCE_ALIAS_MAP             path to the JSON alias map {"alias": {"rid": ..., "branch": ...}}
  FOUNDRY_URL                    host, host:port or http(s) URL (or FOUNDRY_SERVICE_DISCOVERY_V2)
  DEFAULT_CA_PATH                CA bundle to trust (optional)
  SOURCE_CREDENTIALS             source secrets JSON (optional)
  SOURCE_CONFIGURATIONS_PATH     source configurations JSON (optional)
  CONNECTOR_*                    tuning: CONNECTOR_PUBLISH_BATCH_SIZE, CONNECTOR_LOG_FORMAT=json|console, ...

exit codes: 0 stopped cleanly, 1 failed, 2 configuration error (environment, connector module or class),
  128+N stopped at once by a second signal N (143: SIGTERM, 130: SIGINT)
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connector",
        description="Run or check a Foundry pipeline-mode connector.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,check,dev}")
    for name, text in (
        ("run", "run the connector until SIGTERM/SIGINT (flushes outputs and commits before exiting)"),
        ("check", "validate environment, aliases and that every declared resource is reachable; moves no data"),
    ):
        cmd = sub.add_parser(
            name, help=text, description=text, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        cmd.add_argument("connector", metavar="package.module:ClassName", help="the Connector subclass to run")
    text = "run the connector locally: start the fake, create its resources and a job, show live progress"
    dev = sub.add_parser("dev", help=text, description=text)
    dev.add_argument("connector", metavar="package.module:ClassName", help="the Connector subclass to run")
    dev.add_argument("--publish", type=Path, metavar="FILE.jsonl", help="publish these records into its input first")
    dev.add_argument("--reload", action="store_true", help="restart the connector when its source changes")
    dev.add_argument("--exit-when-idle", action="store_true", help="stop once every input is processed (scripts)")
    dev.add_argument("--state-dir", type=Path, default=Path(".connector-dev"), help="the fake's state (kept)")
    dev.add_argument("--fake-url", default=None, help="use a running fake instead of starting one")
    dev.add_argument("--admin-token", default=None, help="the running fake's admin token (with --fake-url)")
    return parser


def _dev(args: argparse.Namespace) -> int:
    import asyncio

    from ._dev import run_dev
    from ._errors import ConfigError
    from ._runtime import EXIT_CONFIG, load_connector_class

    sys.path.insert(0, os.getcwd())  # the user's own package, as `python -m` would find it
    try:
        cls = load_connector_class(args.connector)
        if not issubclass(cls, Connector):
            raise ConfigError(
                f"{args.connector}: `connector dev` runs pipeline connectors; test a FunctionModule "
                "with framework.testing (foundry.runtime(...).running(...))"
            )
        return asyncio.run(
            run_dev(cls, args.connector, state_dir=args.state_dir, fake_url=args.fake_url,
                    admin_token=args.admin_token, publish=args.publish, reload=args.reload,
                    exit_when_idle=args.exit_when_idle)
        )  # fmt: skip
    except ConfigError as exc:
        print(f"connector dev: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "dev":
        return _dev(args)
    return main_run(args.connector, check=args.command == "check")


if __name__ == "__main__":
    sys.exit(main())
