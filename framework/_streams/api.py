"""Stream resources over the Streams API v2: paths and stream metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .._errors import FoundryError
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


def is_view_gone(exc: BaseException) -> bool:
    """The view a request named is not the stream's current one: the stream was reset under us."""
    return isinstance(exc, FoundryError) and exc.error_name == "ViewNotFound"


class StreamHandle(ModelHandle[ModelT]):
    """What stream inputs and outputs share: records are models, and `info` is the stream once checked or open.

    Every read, commit and publish names the view opened (`viewRid`), so a reset of the stream (a new, empty
    view) is an explicit 404 ViewNotFound instead of offsets that silently mean something else.
    """

    kind = "stream"
    info: StreamInfo | None

    async def check(self) -> None:
        self.model  # noqa: B018 - raises a ConfigError when the model is missing
        self.info = await get_stream(self)

    @property
    def view_rid(self) -> str | None:
        return self.info.view_rid if self.info is not None and self.info.view_rid else None

    async def refresh_view(self) -> bool:
        """Read the stream again; True (and one warning) when its view changed, i.e. it was reset."""
        previous = self.view_rid
        self.info = await get_stream(self)
        if self.view_rid == previous:
            return False
        self.metrics.resets += 1
        self.log.warning(
            f"{self.direction} stream was reset",
            alias=self.alias,
            view_rid=self.view_rid,
            previous_view_rid=previous,
            next=self._after_reset,
        )
        return True

    #: What the handle does after a reset, for the log line.
    _after_reset = "goes on with the new view"
