"""Health and metrics over HTTP for `connector run` with CONNECTOR_HTTP_PORT: `/live`, `/ready`, `/metrics`.

Why: a months-long run is watched by an orchestrator and a metrics scraper, not by a person reading logs.

- `/live`   200 while the process's event loop answers at all (a wedged loop does not).
- `/ready`  200 once every handle is open, `setup()` returned and the read loop runs; 503 before that and
            from the moment the connector is stopping (a signal, or a failure).
- `/metrics` Prometheus text: records in / out / invalid / rejected per alias, input lag, seconds since the last
            commit, stream resets, Foundry requests and retries, and whether Foundry is unavailable (and for how
            long). Values are read from the running connector at scrape time, so nothing is counted twice.

Served on 0.0.0.0 (the container's port), without auth: it exposes counts, never records, rids or secrets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ._driver import Driver
from ._logging import get_logger

_log = get_logger("framework.health")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _ConnectorCollector(Collector):
    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    def collect(self) -> Iterator[Metric]:
        driver, client = self.driver, self.driver.connector.client
        records_in = CounterMetricFamily("connector_records_in", "Records read per input", labels=["alias"])
        invalid = CounterMetricFamily(
            "connector_records_invalid", "Input records that failed validation", labels=["alias"]
        )
        lag = GaugeMetricFamily(
            "connector_input_lag_records", "Records written but not yet committed", labels=["alias"]
        )
        age = GaugeMetricFamily("connector_commit_age_seconds", "Seconds since the last commit", labels=["alias"])
        records_out = CounterMetricFamily("connector_records_out", "Records acknowledged per output", labels=["alias"])
        rejected = CounterMetricFamily("connector_records_rejected", "Records an output refused", labels=["alias"])
        resets = CounterMetricFamily("connector_stream_resets", "New stream views noticed", labels=["alias"])
        now = time.monotonic()
        for handle in driver.inputs:
            m = handle.metrics
            records_in.add_metric([handle.alias], m.records)
            invalid.add_metric([handle.alias], m.invalid)
            if m.lag is not None:
                lag.add_metric([handle.alias], m.lag)
            if m.committed_at is not None:
                age.add_metric([handle.alias], now - m.committed_at)
            resets.add_metric([handle.alias], m.resets)
        for handle in driver.outputs:
            records_out.add_metric([handle.alias], handle.metrics.records)
            rejected.add_metric([handle.alias], handle.metrics.invalid)
            resets.add_metric([handle.alias], handle.metrics.resets)
        yield from (records_in, invalid, lag, age, records_out, rejected, resets)
        yield CounterMetricFamily("connector_foundry_requests", "HTTP exchanges with Foundry", client.metrics.requests)
        yield CounterMetricFamily("connector_foundry_retries", "Retried Foundry requests", client.metrics.retries)
        yield CounterMetricFamily("connector_foundry_outages", "Outages of Foundry seen", client.outage.count)
        yield GaugeMetricFamily(
            "connector_foundry_unavailable", "1 while Foundry is unavailable", int(client.outage.active)
        )
        yield GaugeMetricFamily(
            "connector_foundry_unavailable_seconds", "How long the current outage lasts", client.outage.seconds()
        )
        yield GaugeMetricFamily("connector_ready", "1 while /ready answers 200", int(driver.ready))


class HealthServer:
    """Runs beside the connector in its event loop; `start` before the connector opens, `stop` after it ended."""

    def __init__(self, driver: Driver, port: int, host: str = "0.0.0.0") -> None:
        self.driver, self.port, self.host = driver, port, host
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_ConnectorCollector(driver))
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/live", self._live)
        app.router.add_get("/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, reuse_address=True).start()
        _log.info("health and metrics served", port=self.port, paths=["/live", "/ready", "/metrics"])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    async def _ready(self, request: web.Request) -> web.Response:
        ready = self.driver.ready and self.driver.connector.running
        return web.json_response({"status": "ready" if ready else "not ready"}, status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE})
