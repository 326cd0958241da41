"""CONNECTOR_WORKERS=N: N worker processes that split every stream input's partitions among themselves.

Worker i (CONNECTOR_WORKER_INDEX=i, set by the parent) reads only the partitions p with p % N == i, through the
same server-side subscriber (readRecords and commitOffsets name its partitions), so each partition has exactly
one reader and the at-least-once guarantee is per worker as before. Outputs are shared: every worker publishes
to them (order is kept per input partition, not across partitions). With CONNECTOR_HTTP_PORT=P, worker i serves
/live, /ready and /metrics on port P + i.

The parent only supervises: it forwards SIGTERM / SIGINT to every worker, stops the others when one fails, and
exits with the worst exit code of its workers (a worker killed by signal S counts as 128 + S).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from types import FrameType

from structlog.stdlib import BoundLogger

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def exit_code(returncode: int) -> int:
    """A child's return code as an exit code: killed by signal S is 128 + S."""
    return 128 - returncode if returncode < 0 else returncode


def worker_environ(environ: Mapping[str, str], index: int, workers: int) -> dict[str, str]:
    env = {**environ, "CONNECTOR_WORKERS": str(workers), "CONNECTOR_WORKER_INDEX": str(index)}
    port = environ.get("CONNECTOR_HTTP_PORT")
    if port:
        env["CONNECTOR_HTTP_PORT"] = str(int(port) + index)
    return env


def run_workers(spec: str, environ: Mapping[str, str], workers: int, *, log: BoundLogger) -> int:
    """Start `workers` processes of `connector run spec` and supervise them until all exited."""
    children: list[subprocess.Popen[bytes]] = []
    stopping: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index in range(workers):
            command = [sys.executable, "-m", "framework.cli", "run", spec]
            env = worker_environ(environ, index, workers)
            children.append(subprocess.Popen(command, env=env, preexec_fn=_block_stop_signals))
        log.info("workers started", workers=workers, pids=[c.pid for c in children])
        codes: dict[int, int] = {}
        while len(codes) < len(children):
            for index, child in enumerate(children):
                if index in codes or child.poll() is None:
                    continue
                codes[index] = exit_code(child.returncode)
                if codes[index] != 0 and not stopping:
                    log.error("worker failed; stopping the others", worker=index, exit_code=codes[index])
                    forward(signal.SIGTERM, None)
            time.sleep(0.05)
        worst = max(codes.values(), default=0)
        log.info("workers stopped", exit_codes=[codes[i] for i in range(len(children))], exit_code=worst)
        return worst
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _block_stop_signals() -> None:
    """In a worker before it runs Python: a SIGTERM forwarded while it still starts stays pending (rather than
    killing it) until `serve_connector` handles the signals and unblocks them."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def unblock_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def spec_of(cls: type) -> str:
    """`module:qualname` of a connector class, what a worker process loads."""
    return f"{cls.__module__}:{cls.__qualname__}"
