"""Stream resources over the Streams API v2: paths and stream metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .._handles import Handle, ModelHandle, ModelT


def stream_path(rid: str, branch: str, suffix: str = "", *, high_scale: bool = False) -> str:
    base = "/v2/highScale/streams" if high_scale else "/v2/streams"
    return f"{base}/datasets/{quote(rid, safe='')}/streams/{quote(branch, safe='')}{suffix}"


@dataclass
class StreamInfo:
    view_rid: str
    partitions: int
    schema: dict[str, Any]


async def get_stream(handle: Handle) -> StreamInfo:
    body = await handle.client.request_json("GET", stream_path(handle.rid, handle.branch))
    return StreamInfo(
        view_rid=str(body.get("viewRid", "")),
        partitions=int(body.get("partitionsCount") or 1),
        schema=body.get("schema") or {},
    )


class StreamHandle(ModelHandle[ModelT]):
    """What stream inputs and outputs share: records are models, and `info` is the stream once checked or open."""

    kind = "stream"
    info: StreamInfo | None

    async def check(self) -> None:
        self.model  # noqa: B018 - raises a ConfigError when the model is missing
        self.info = await get_stream(self)
