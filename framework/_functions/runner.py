"""Serving a `FunctionModule`: workers poll for jobs, run them, post results; SIGTERM drains within a bound.

Each of `MAX_CONCURRENT_TASKS` workers polls only while it is free, so at most that many jobs run at once.
A job never stops the module: every failure becomes a one-line `{"error"|"exception": ...}` result.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
from structlog.stdlib import BoundLogger

from .._logging import forget_secret, register_secret
from .client import RuntimeClient, RuntimeStopped
from .environment import FunctionEnvironment
from .module import FunctionDef, FunctionModule, JobContext, iterate

EXIT_OK, EXIT_FAILED = 0, 1


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "query"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"field {where!r}: {first['msg']}{more}"


def _failure(key: str, message: str) -> bytes:
    return json.dumps({key: message}).encode()


class FunctionRunner:
    def __init__(self, module: FunctionModule, env: FunctionEnvironment, client: RuntimeClient) -> None:
        self.module = module
        self.env = env
        self.client = client
        self.functions = module.functions()
        self.jobs_done = 0
        self.jobs_failed = 0

    async def worker(self) -> None:
        stopping = self.client.stopping
        while not stopping.is_set():
            poll = asyncio.ensure_future(self.client.poll())
            stop = asyncio.ensure_future(stopping.wait())
            await asyncio.wait({poll, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not poll.done():  # stopping: an idle long-poll is abandoned, a running job never is
                poll.cancel()
                return
            try:
                job = poll.result()
            except RuntimeStopped:
                return
            if job is None:
                continue
            try:
                await self.run_job(job)
            except Exception as exc:  # a job must never take a worker down
                self.module.log.exception("job could not be completed", error=f"{type(exc).__name__}: {exc}")

    async def run_job(self, job: dict[str, Any]) -> None:
        inner = job.get("computeModuleJobV1")
        v1: dict[str, Any] = inner if isinstance(inner, dict) else job
        job_id = str(v1.get("jobId", ""))
        query_type = str(v1.get("queryType", ""))
        secrets = [s for s in (v1.get("authHeader"), v1.get("temporaryCredentialsAuthToken")) if isinstance(s, str)]
        for secret in secrets:
            register_secret(secret)
        log = self.module.log.bind(job_id=job_id, query_type=query_type)
        ctx = JobContext(
            job_id=job_id,
            query_type=query_type,
            user_id=v1.get("userId"),
            log=log,
            authorization=v1.get("authHeader"),
            temporary_credentials=v1.get("temporaryCredentialsAuthToken"),
            environ=self.env.environ,
        )
        started = time.monotonic()
        try:
            body, failed = await self._result(ctx, v1.get("query"))
            await self.client.post_result(job_id, body)
        finally:
            for secret in secrets:
                forget_secret(secret)
        self.jobs_done += 1
        self.jobs_failed += failed
        log.info("job finished", failed=failed, duration_ms=round((time.monotonic() - started) * 1000, 1))

    async def _result(self, ctx: JobContext, query: Any) -> tuple[bytes | AsyncIterator[bytes], bool]:
        fn = self.functions.get(ctx.query_type)
        if fn is None:
            known = ", ".join(sorted(self.functions)) or "none"
            ctx.log.error("unknown query type", known=known)
            return _failure("error", f"Unknown query type {ctx.query_type!r}: this module serves {known}"), True
        try:
            parsed = fn.parse(query)
        except ValidationError as exc:
            message = f"query for {fn.name!r} is invalid: {_one_line(exc)}"
            ctx.log.error("invalid query", error=message)
            return _failure("error", message), True
        try:
            value = await self._call(fn, ctx, parsed)
        except Exception as exc:
            ctx.log.exception("function raised", error=f"{type(exc).__name__}: {exc}")
            return _failure("exception", f"{type(exc).__name__}: {exc}"), True
        if fn.streaming:
            return self._stream(fn, ctx, value), False
        try:
            body = fn.encode(value)
        except (ValidationError, PydanticSerializationError, ValueError, TypeError) as exc:
            detail = _one_line(exc) if isinstance(exc, ValidationError) else str(exc)
            message = f"result of {fn.name!r} does not match its return type: {detail}"
            ctx.log.error("invalid result", error=message)
            return _failure("error", message), True
        if len(body) > self.env.max_result_bytes:
            message = (
                f"result of {fn.name!r} is {len(body)} bytes, over the {self.env.max_result_bytes}-byte limit "
                "(CONNECTOR_MAX_RESULT_BYTES); return less or stream it"
            )
            ctx.log.error("result too large", size_bytes=len(body))
            return _failure("error", message), True
        return body, False

    async def _call(self, fn: FunctionDef, ctx: JobContext, query: Any) -> Any:
        if fn.is_async:
            result = fn.call(self.module, ctx, query)
            return result if fn.streaming and not asyncio.iscoroutine(result) else await result
        return await asyncio.to_thread(fn.call, self.module, ctx, query)

    async def _stream(self, fn: FunctionDef, ctx: JobContext, value: Any) -> AsyncIterator[bytes]:
        """One JSON value per chunk; a failure mid-stream ends it with an `exception` chunk, and is logged."""
        count = 0
        try:
            async for item in iterate(value):
                yield fn.encode(item)
                count += 1
        except Exception as exc:
            ctx.log.exception("streaming function raised", error=f"{type(exc).__name__}: {exc}", items=count)
            yield _failure("exception", f"{type(exc).__name__}: {exc} (after {count} items)")


async def serve_function_module(
    module: FunctionModule | type[FunctionModule],
    env: FunctionEnvironment,
    *,
    log: BoundLogger,
    handle_signals: bool = True,
    stopping: asyncio.Event | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT (or `stopping` is set); returns the exit code (0 drained, 1 drain timed out)."""
    if isinstance(module, type):
        module = module(env.environ, log)
    stopping = stopping or asyncio.Event()
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
    connector = aiohttp.TCPConnector(ssl=env.ssl_context(), limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            client = RuntimeClient(env, session, stopping)
            await module.setup()
            try:
                await client.post_schemas(module.specs())
                removed = await client.report_restart()
                log.info(
                    "function module ready",
                    functions=sorted(module.functions()),
                    concurrency=env.max_concurrent_tasks,
                    removed_jobs=removed,
                )
                runner = FunctionRunner(module, env, client)
                workers = [asyncio.create_task(runner.worker()) for _ in range(env.max_concurrent_tasks)]
                await stopping.wait()
                log.info("stopping", timeout_s=env.shutdown_timeout_s)
                _, pending = await asyncio.wait(workers, timeout=env.shutdown_timeout_s)
                for task in pending:
                    task.cancel()
                if pending:
                    log.error("shutdown timed out; running jobs were abandoned", jobs=len(pending))
                    return EXIT_FAILED
                log.info("stopped", jobs=runner.jobs_done, failed=runner.jobs_failed)
                return EXIT_OK
            finally:
                await module.teardown()
    finally:
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
