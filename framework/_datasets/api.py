"""Dataset resources: paths, and the file and transaction records the API returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote


def dataset_path(rid: str, *segments: str) -> str:
    """`/v2/datasets/{rid}/...` with every segment percent-encoded (file paths keep no raw `/`)."""
    return "/".join(["/v2/datasets", quote(rid, safe=""), *(quote(s, safe="") for s in segments)])


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class DatasetFile:
    """One file of a dataset view, as `GET /files` lists it."""

    path: str
    transaction_rid: str
    size_bytes: int | None
    updated_time: datetime | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> DatasetFile:
        size = body.get("sizeBytes")
        return cls(
            str(body["path"]),
            str(body.get("transactionRid", "")),
            int(size) if size is not None else None,
            _time(body.get("updatedTime")),
        )


@dataclass(frozen=True)
class Transaction:
    """A dataset transaction's state, as the server reported it last."""

    rid: str
    transaction_type: str
    status: str
    created_time: datetime | None
    closed_time: datetime | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Transaction:
        return cls(
            str(body["rid"]),
            str(body.get("transactionType", "")),
            str(body.get("status", "")),
            _time(body.get("createdTime")),
            _time(body.get("closedTime")),
        )
