"""`connector`: the container entrypoint (`connector run package.module:ClassName`), and the project tools
(`init`, `schema`, `check`, `dev`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ._connector import Connector
from ._runtime import main_run
from ._scaffold import FRAMEWORK_PATH_VAR

_EPILOG = """\
environment (set by Foundry in pipeline mode; set them yourself to run against the fake):
  BUILD2_TOKEN                   path to the job token file
  RESOURCE_ALIAS_MAP             path to the JSON alias map {"alias": {"rid": ..., "branch": ...}}
  FOUNDRY_URL                    host, host:port or http(s) URL (or FOUNDRY_SERVICE_DISCOVERY_V2)
  DEFAULT_CA_PATH                CA bundle to trust (optional)
  SOURCE_CREDENTIALS             source secrets JSON (optional)
  SOURCE_CONFIGURATIONS_PATH     source configurations JSON (optional)
  CONNECTOR_*                    tuning: CONNECTOR_PUBLISH_BATCH_SIZE, CONNECTOR_LOG_FORMAT=json|console, ...
                                 (every one: the README's settings table; an unknown one is a warning)

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
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,check,dev,schema,init}")
    for name, text in (
        ("run", "run the connector until SIGTERM/SIGINT (flushes outputs and commits before exiting)"),
        (
            "check",
            "validate environment, aliases, that every declared resource is reachable and that its schema "
            "matches its model; moves no data",
        ),
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
    text = "print the Foundry stream and dataset schemas the connector's models map to"
    schema = sub.add_parser("schema", help=text, description=text)
    schema.add_argument("connector", metavar="package.module:ClassName", help="the Connector subclass")
    schema.add_argument("--yaml", action="store_true", help="as a stack file (fake-stream-proxy serve --stack)")
    text = "create a new connector project: package, test, pyproject.toml, Dockerfile, stack file"
    init = sub.add_parser("init", help=text, description=text)
    init.add_argument("name", help="the project's name, e.g. my-sensor (its package: my_sensor)")
    init.add_argument("--dir", type=Path, default=Path("."), help="where to create the project folder")
    init.add_argument(
        "--framework-path",
        default=os.environ.get(FRAMEWORK_PATH_VAR),
        metavar="PATH",
        help=f"a foundry-connectors wheel or checkout to put in the project's wheels/ (default: ${FRAMEWORK_PATH_VAR})",
    )
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("foundry-connectors")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _schema(args: argparse.Namespace) -> int:
    import json

    import yaml

    from ._errors import ConfigError
    from ._loading import load_connector_class
    from ._schemas import declared_schemas, stack_file

    try:
        cls = load_connector_class(args.connector)
        if not issubclass(cls, Connector):
            raise ConfigError(f"{args.connector}: a FunctionModule has no stream or dataset schemas")
        if args.yaml:
            job = args.connector.partition(":")[0].split(".")[0]
            print(yaml.safe_dump(stack_file(cls, args.connector, job), sort_keys=False), end="")
        else:
            print(json.dumps(declared_schemas(cls), indent=2))
    except ConfigError as exc:
        print(f"connector schema: {exc}", file=sys.stderr)
        return 2
    return 0


def _init(args: argparse.Namespace) -> int:
    from ._errors import ConfigError
    from ._scaffold import init_project, names

    try:
        target = init_project(args.name, args.dir, args.framework_path)
    except (ConfigError, OSError) as exc:
        print(f"connector init: {exc}", file=sys.stderr)
        return 2
    spec = "{package}.connector:{class}".format(**names(args.name))
    print(f"created {target}\n  cd {target} && python -m venv .venv")
    print("  .venv/bin/pip install --find-links wheels -e '.[testing]'")
    print(f"  .venv/bin/pytest && .venv/bin/connector dev {spec}")
    return 0


def _dev(args: argparse.Namespace) -> int:
    import asyncio

    from ._dev import run_dev
    from ._errors import ConfigError
    from ._loading import load_connector_class
    from ._runtime import EXIT_CONFIG

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
    if args.command == "schema":
        return _schema(args)
    if args.command == "init":
        return _init(args)
    return main_run(args.connector, check=args.command == "check")


if __name__ == "__main__":
    sys.exit(main())
