"""`connector run` as a real process against the in-process fake: asyncio subprocess, output to a file, JSON logs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_CONFIGURING = ("CONNECTOR_", "BUILD2_TOKEN", "RESOURCE_ALIAS_MAP", "FOUNDRY_", "DEFAULT_CA_PATH", "SOURCE_")


@dataclass
class ConnectorProcess:
    process: asyncio.subprocess.Process
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 15) -> int:
        if self.process.returncode is None:
            self.process.send_signal(sig)
        return await asyncio.wait_for(self.process.wait(), timeout_s)

    async def kill_all(self, timeout_s: float = 15) -> int:
        """SIGKILL the process and every process it started (a container killed: its workers die with it);
        needs `start_cli(..., own_group=True)`."""
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        return await asyncio.wait_for(self.process.wait(), timeout_s)


async def start_cli(
    log_dir: Path,
    name: str,
    *args: str,
    environ: Mapping[str, str],
    prefixes: tuple[str, ...] = (),
    own_group: bool = False,
) -> ConnectorProcess:
    """`python -m framework.cli <args>` with os.environ minus anything configuring a connector (and minus
    `prefixes`, e.g. the connector's own settings), plus `environ`. A full pipe would block the process,
    so its output goes to `<log_dir>/<name>.log`."""
    drop = (*_CONFIGURING, *prefixes)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(drop)}, **environ}
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "framework.cli", *args, env=env, cwd=ROOT, stdout=out, stderr=out,
            start_new_session=own_group,
        )  # fmt: skip
    return ConnectorProcess(process, log)


async def start_connector(
    log_dir: Path,
    name: str,
    spec: str,
    environ: Mapping[str, str],
    *,
    prefixes: tuple[str, ...] = (),
    own_group: bool = False,
) -> ConnectorProcess:
    """`connector run <spec>` as a process (`own_group`: in a process group of its own, for `kill_all`)."""
    return await start_cli(log_dir, name, "run", spec, environ=environ, prefixes=prefixes, own_group=own_group)
