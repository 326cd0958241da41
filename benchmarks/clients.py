"""The baselines `make bench` measures the framework against, each run as its own process.

- `docs`: the hand-written loop of Foundry's compute-module docs: blocking HTTP (urllib, a connection per
  request), one GET of input records per partition, then one POST per output record to `jsonRecord`, minus
  its `sleep(60)` and plus an offset cursor per partition (as written it only ever sees the latest records).
- `ceiling`: a hand-tuned asyncio client with no framework: aiohttp, orjson, batches of 1000, getRecords per
  partition from a cursor, publishRecords, then commitOffsets on a subscriber, read / publish / commit
  pipelined (4 batches in flight), publishes kept in order. What a client can do on this fake at best.

Both print `ready` once their session is up, then run until SIGTERM; the harness detects completion from the
output's end offsets. Run: `python -m benchmarks.clients docs|ceiling URL TOKEN SRC DST PARTITIONS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import urllib.request
from typing import Any

import aiohttp
import orjson

STREAM = "/api/v2/highScale/streams/datasets/{rid}/streams/master"
IN_FLIGHT = 4
BATCH = 1000


def docs_loop(base: str, token: str, src: str, dst: str, partitions: int) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(method: str, path: str, body: bytes | None = None) -> bytes:
        req = urllib.request.Request(base + path, data=body, headers=headers, method=method)
        with urllib.request.urlopen(req) as resp:
            data: bytes = resp.read()
            return data

    offsets = [0] * partitions
    print("ready", flush=True)
    while True:
        for partition in range(partitions):
            page = (
                f"{STREAM.format(rid=src)}/getRecords"
                f"?partitionId={partition}&startOffset={offsets[partition]}&limit=1000&preview=true"
            )
            for record in json.loads(call("GET", page)):
                out = {"twice_x": int(record["value"]["x"]) * 2}
                call("POST", f"/stream-proxy/api/streams/{dst}/branches/master/jsonRecord", json.dumps(out).encode())
                offsets[partition] = int(record["offset"]) + 1


async def ceiling(base: str, token: str, src: str, dst: str, partitions: int) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    src_path, dst_path = base + STREAM.format(rid=src), base + STREAM.format(rid=dst)
    subscriber = f"ceiling-{src}"
    published: asyncio.Queue[tuple[int, int, bytes]] = asyncio.Queue(IN_FLIGHT)
    committing: asyncio.Queue[tuple[int, int]] = asyncio.Queue(IN_FLIGHT)
    async with aiohttp.ClientSession(headers=headers) as session:

        async def post(url: str, body: Any, **params: str) -> bytes:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            async with session.post(url, data=data, params=params) as resp:
                if resp.status >= 400:
                    raise RuntimeError(f"{url} -> {resp.status}: {await resp.text()}")
                return await resp.read()

        create = base + STREAM.format(rid=src).replace("/highScale", "") + "/subscribers"
        await post(create, {"subscriberId": subscriber}, preview="true")
        async with session.get(f"{src_path}/subscribers/{subscriber}/getReadPosition", params={"preview": "true"}) as r:
            cursor = {int(p): int(o) for p, o in orjson.loads(await r.read()).items()}

        async def read() -> None:
            while True:
                got = 0
                for partition in range(partitions):
                    params = {"partitionId": str(partition), "startOffset": str(cursor[partition])}
                    params |= {"limit": str(BATCH), "preview": "true"}
                    async with session.get(f"{src_path}/getRecords", params=params) as resp:
                        page = orjson.loads(await resp.read())
                    if page:
                        body = orjson.dumps({"records": [{"twice_x": r["value"]["x"] * 2} for r in page]})
                        cursor[partition] = page[-1]["offset"] + 1
                        got += len(page)
                        await published.put((partition, page[-1]["offset"], body))
                if not got:
                    await asyncio.sleep(0.002)

        async def publish() -> None:
            while True:
                partition, last, body = await published.get()
                await post(f"{dst_path}/publishRecords", body)
                await committing.put((partition, last))

        async def commit() -> None:
            while True:
                partition, last = await committing.get()
                body = {"offsets": {str(partition): last}}
                await post(f"{src_path}/subscribers/{subscriber}/commitOffsets", body, preview="true")

        work = asyncio.gather(read(), publish(), commit())
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, work.cancel)
        print("ready", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await work


def main(argv: list[str]) -> None:
    kind, base, token, src, dst, partitions = argv
    if kind == "docs":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        docs_loop(base, token, src, dst, int(partitions))
    else:
        asyncio.run(ceiling(base, token, src, dst, int(partitions)))


if __name__ == "__main__":
    main(sys.argv[1:])
