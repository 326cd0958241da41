"""`make bench`: every benchmark, each printing ratios against a baseline measured in the same run."""

from __future__ import annotations

import asyncio
import sys

from benchmarks import connector_suite, dataset_read_rss, fake_ingest, windowed


def main() -> int:
    print("== connector: drain, latency, CPU and RSS vs the hand-tuned client and the docs' loop; workers", flush=True)
    asyncio.run(connector_suite.main())
    print("\n== dataset read: peak RSS of streamed batches vs the whole table, >= 1 GiB", flush=True)
    asyncio.run(dataset_read_rss.main(1.0))
    print("\n== fake ingest and reads: the fake against a minimal aiohttp server, and its state size", flush=True)
    asyncio.run(fake_ingest.main(200_000))
    print("\n== windowed aggregation: throughput against the stateless doubler, restore time", flush=True)
    asyncio.run(windowed.main(100_000, 200_000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
