"""Links between the page's views: a stream or dataset opens in the page itself (`/?stream=RID`)."""

from __future__ import annotations

from urllib.parse import urlencode


def resource_link(type_: str | None, rid: str, branch: str | None = None) -> str | None:
    """Where the page shows this resource; None for types it has no view of (media sets)."""
    key = {"stream": "stream", "dataset": "dataset"}.get(type_ or "")
    if key is None:
        return None
    query = {key: rid, **({"branch": branch} if branch and branch != "master" else {})}
    return "/?" + urlencode(query)
