"""`connector`: the container entrypoint (`connector run package.module:ClassName`)."""

from __future__ import annotations

import argparse
import sys

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
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,check}")
    for name, text in (
        ("run", "run the connector until SIGTERM/SIGINT (flushes outputs and commits before exiting)"),
        ("check", "validate environment, aliases and that every declared resource is reachable; moves no data"),
    ):
        cmd = sub.add_parser(
            name, help=text, description=text, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        cmd.add_argument("connector", metavar="package.module:ClassName", help="the Connector subclass to run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return main_run(args.connector, check=args.command == "check")


if __name__ == "__main__":
    sys.exit(main())
